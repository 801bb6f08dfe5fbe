"""Local pre-selection: rank every compatible hub module from public fingerprints and the
owner's own data, on the owner's machine, so that only the top few are downloaded for AMC."""
