"""The shell both programs share (``moma-client`` and ``moma-hub``): how errors, usage mistakes
and ``--version`` look, and the option definitions both sides use for the same thing."""
