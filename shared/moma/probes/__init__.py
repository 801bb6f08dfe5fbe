"""Public probe sets and module fingerprints (what a module does on structures anyone may see).

A hub runs every submitted module on a public, versioned probe set and publishes a compact
fingerprint of its behaviour, so a downstream owner can pre-select promising modules on their
own machine without downloading every module and without sending anything of their data.
"""
