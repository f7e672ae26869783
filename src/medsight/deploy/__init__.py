"""Deployment: exported networks (ONNX, TorchScript), onnxruntime inference, model cards, audit trail, input checks.

Modules:

* :mod:`~medsight.core.hashing` - SHA-256 of weights and inputs;
* :mod:`~medsight.engine.networks` - ONNX/TorchScript export of one network, onnxruntime sessions, int8 quantisation
  and :class:`~medsight.engine.networks.OnnxNetwork`, the adapter that lets the existing predictors run onnxruntime;
* :mod:`~medsight.deploy.export` - ``medsight export``: every fold of a run plus its plan, written atomically;
* :mod:`~medsight.engine.runtime` - the networks of a run or an export for an engine (``torch`` or ``onnx``);
* :mod:`~medsight.report.card` - ``MODEL_CARD.md`` + ``model_card.json``;
* :mod:`~medsight.report.digest` - the model digest the user pins (``--expect-sha256``) and the card consistency
  check of ``--verify``; :mod:`~medsight.core.pinned` serves the hashed bytes to the loaders;
* :mod:`~medsight.deploy.audit` - one JSON line per prediction in ``audit.jsonl``;
* :mod:`~medsight.data.sanity` - modality, spacing and intensity of an input against the training fingerprint.
"""
