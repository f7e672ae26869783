"""GAN synthesis to augment scarce data: train a conditional GAN, sample new cases, mix them into training batches.

* classification data (2D): a class-conditional DCGAN generator with a spectral-norm projection discriminator;
* segmentation data (2D or 3D): a mask-conditioned pix2pix U-Net generator with a spectral-norm PatchGAN
  discriminator; real masks deformed elastically become new, aligned (image, mask) pairs.

Modules: :mod:`~medsight.synthesis.plan` (``GAN_DIR/plans.json``), :mod:`~medsight.synthesis.data` (cases as arrays
in ``[-1, 1]`` and training samplers), :mod:`~medsight.synthesis.networks`, :mod:`~medsight.synthesis.trainer`
(on the shared :class:`~medsight.train.trainer.Trainer`), :mod:`~medsight.synthesis.quality` (precision, recall,
coverage, Fréchet distance), :mod:`~medsight.synthesis.sample` and :mod:`~medsight.synthesis.writers` (outputs in the
dataset's own format, marked synthetic), :mod:`~medsight.synthesis.mix` (``medsight train --synthetic``) and
:mod:`~medsight.synthesis.pipeline` (``medsight synthesize train``).
"""
