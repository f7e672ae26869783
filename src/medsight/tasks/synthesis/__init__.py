"""GAN synthesis to augment scarce data: train a conditional GAN, sample new cases, mix them into training batches.

* classification data (2D): a class-conditional DCGAN generator with a spectral-norm projection discriminator;
* segmentation data (2D or 3D): a mask-conditioned pix2pix U-Net generator with a spectral-norm PatchGAN
  discriminator; real masks deformed elastically become new, aligned (image, mask) pairs.

Modules: :mod:`~medsight.tasks.synthesis.plan` (``GAN_DIR/plans.json``), :mod:`~medsight.tasks.synthesis.data` (cases as arrays
in ``[-1, 1]`` and training samplers), :mod:`~medsight.tasks.synthesis.networks`, :mod:`~medsight.tasks.synthesis.trainer`
(on the shared :class:`~medsight.engine.trainer.Trainer`), :mod:`~medsight.tasks.synthesis.quality` (precision, recall,
coverage, Fréchet distance), :mod:`~medsight.tasks.synthesis.sample` and :mod:`~medsight.tasks.synthesis.writers` (outputs in the
dataset's own format, marked synthetic), :mod:`~medsight.transforms.synthetic` (``medsight train --synthetic``) and
:mod:`~medsight.tasks.synthesis.pipeline` (``medsight synthesize train``).
"""
