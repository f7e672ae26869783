"""Networks: U-Nets (:mod:`~medsight.models.unet`), classifiers (:mod:`~medsight.models.classifiers`), the multi-task
U-Net and the registration network; :func:`~medsight.models.registry.create_model` builds any of them by name."""
