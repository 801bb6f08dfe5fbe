"""Federated module training with Flower's deployment engine (DESIGN.md section 8).

Several labs that share a task train one module together: the coordinator runs a SuperLink and
starts the ServerApp (:mod:`moma_client.federation.coordinator`: ServerApp, admission,
strategy) with ``flwr run``; each lab runs a SuperNode whose ClientApp
(:mod:`moma_client.federation.lab`: ClientApp, local training) trains on the lab's own file
through the same code as ``moma-client train``. Only module tensors (Flower ArrayRecords) and a
few signed summary numbers cross the wire; the result is a normal module folder.
"""
