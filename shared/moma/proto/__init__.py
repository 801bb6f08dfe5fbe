"""Protocol stubs generated from ``protos/`` by ``scripts/gen_protos.py`` (do not edit by hand).

Import them as ``from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc``; the descriptors keep
their proto names (``moma/hub/v1/hub.proto``, package ``moma.hub.v1``).
"""
