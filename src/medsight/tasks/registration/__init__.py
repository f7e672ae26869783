"""Image registration: classical (SimpleITK, rigid -> affine -> B-spline) and learned (VoxelMorph-style network).

See :mod:`medsight.tasks.registration.classical`, :mod:`medsight.tasks.registration.learned`, :mod:`medsight.tasks.registration.transforms`
(saving, loading and applying ITK transforms) and :mod:`medsight.tasks.registration.evaluate` (Dice, folding).
"""
