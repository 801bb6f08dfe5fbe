"""CHGNet: the pretrained Crystal Hamiltonian Graph neural Network as a MoMa backbone.

Deng et al., "CHGNet as a pretrained universal neural network potential for charge-informed
atomistic modelling", Nat. Mach. Intell. 5, 1031 (2023). The weights are CHGNet 0.3.0, shipped
inside the ``chgnet`` package (0.4.2) as a PyTorch zip checkpoint; they are read with
:mod:`moma.backbones.torch_zip_reader`, never unpickled (``CHGNet.load`` calls ``torch.load``).

The network (``chgnet.model.CHGNet``, kept whole as the ``chgnet`` submodule, so state-dict keys
are the checkpoint's with a ``chgnet.`` prefix) embeds atoms, bonds (radial Bessel basis, atom
graph cutoff 6 Å) and angles (Fourier basis over bond pairs within 3 Å), then runs 4 atom
convolutions interleaved with 3 bond and 3 angle updates, and a LayerNorm (``readout_norm``).

- **Embedding**: the mean over each crystal's atoms of the atom features after the last atom
  convolution and ``readout_norm`` (64 dims). CHGNet's own ``crystal_fea`` is the *sum* of these
  (its pretrained readout sums per-atom energies), so the mean is that sum over the atom count.
  It is computed by the message-passing part of ``CHGNet._compute`` without the energy readout
  and without forces, stress or magnetic moments: graphs carry no ``requires_grad`` positions
  or strain, so no derivative with respect to geometry is ever built.
- **Head**: CHGNet's own readout MLP (``chgnet.mlp``: 64 -> 64 -> 64 -> 64 -> 1, SiLU), applied
  to the mean embedding and re-initialized by :meth:`CHGNetModel.reset_head`. It keeps the shape
  (and, after :meth:`CHGNetBackbone.build_pretrained`, the weights) of the pretrained energy
  readout, so the pretrained model maps to a property model without new parameter names.
- **No composition model**: CHGNet adds a linear per-element reference energy (``AtomRef``) to
  its energy; that is an energy-specific offset, so the property model is built without it and
  the checkpoint's ``composition_model.*`` tensor is the one key not loaded. ``site_wise``
  (the magnetic-moment readout) stays in the network (strict loading) but is unused.
- **Adapters** sit after every ``chgnet.atom_conv_layers[i]``: ``AtomConv`` returns the updated
  atom-feature tensor (its residual is inside), so the forward hooks of
  :func:`moma.backbones.adapters.insert_adapters` transform exactly that output.

Graphs are ``CrystalGraphConverter`` outputs (cutoffs from the checkpoint's model args) stored
as numpy arrays. Batching needs the model's learnable basis expansions, so :meth:`collate`
returns a :class:`CHGNetBatch` of ``CrystalGraph`` objects and the model builds chgnet's
``BatchedGraph`` in :meth:`CHGNetModel.atom_features`.
"""
