"""Uncertainty attached to every prediction of a trained or composed model.

Three independent signals (DESIGN.md section 10), each fitted on data the model did not train
on and each stored with the model so that ``predict`` can report it without the training data:

- :mod:`.conformal`: split conformal intervals from validation residuals (a coverage level,
  90 % by default, with the finite-sample guarantee of split conformal prediction);
- :mod:`.spread`: the weighted spread of an ensemble's parts;
- :mod:`.domain`: an applicability-domain score, the distance of a structure's embedding to its
  nearest training embeddings, with a threshold fitted on validation structures;
- :mod:`.ranges`: physical ranges per task (a dielectric constant is at least 1, a Poisson
  ratio lies in [-1, 0.5]) and what is done to predictions outside them;
- :mod:`.calibration`: the whole set, as stored in a card and applied at prediction time.
"""
