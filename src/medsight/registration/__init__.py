"""Image registration: classical (SimpleITK, rigid -> affine -> B-spline) and learned (VoxelMorph-style network).

See :mod:`medsight.registration.classical`, :mod:`medsight.registration.learned`, :mod:`medsight.registration.transforms`
(saving, loading and applying ITK transforms) and :mod:`medsight.registration.evaluate` (Dice, folding).
"""
