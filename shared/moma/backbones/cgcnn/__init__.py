"""CGCNN: Crystal Graph Convolutional Neural Network.

Xie & Grossman, "Crystal Graph Convolutional Neural Networks for an Accurate and Interpretable
Prediction of Material Properties", Phys. Rev. Lett. 120, 145301 (2018).

For atom ``i`` with features ``v_i`` and each of its ``M = 12`` nearest neighbours ``j`` (bond
features ``e_ij``, a Gaussian expansion of the distance), one convolution computes

    z_ij = W [v_i ; v_j ; e_ij] + b                      (fc_full, BatchNorm bn1 over all pairs)
    v_i <- softplus(v_i + BN2( sum_j sigmoid(z_ij^f) * softplus(z_ij^s) ))

where ``z^f`` and ``z^s`` are the first and second halves of ``z``. Four convolutions follow an
embedding ``Linear(92 -> 64)`` of the CGCNN atom vectors; the crystal embedding is the mean of
the atom features (64 dims) and the head is ``softplus -> Linear(64 -> 32) -> softplus ->
Linear(32 -> 1)``. Parameter names match the MoE-(18) checkpoints exactly so they load with
strict key matching.

Graphs follow the original featurization: all neighbours within 8 Å under periodic boundary
conditions, sorted by distance, the 12 nearest kept; sites with fewer are padded with index 0
and distance 9 Å (a site with none is rejected: it would see only padding).
"""
