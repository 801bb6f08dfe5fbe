"""The coordinator's role: the Flower ServerApp, admission of labs, the screened FedAvg strategy
and the run that turns the rounds into a module (:mod:`.run`)."""
