"""Data-overlap fingerprints: did a module see my validation or test structures?

A contributing lab may publish, on its module's card, a salted Bloom filter of the canonical
forms of the structures it trained on (:mod:`.fingerprint`, built from :mod:`.canonical`). A
downstream owner's client then tests its own validation and test structures against it,
locally, and excludes modules that saw them. The privacy trade-off is written in docs/hub.md.
"""
