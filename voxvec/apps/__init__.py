"""Applications built on embeddings: calibrated verification, a speaker store with enrollment and
open-set identification, diarization.

- :mod:`voxvec.apps.identity`: which model made an embedding (:class:`ModelIdentity`), so that a
  store or a calibration refuses embeddings of another model;
- :mod:`voxvec.apps.calibration`: score -> log-likelihood-ratio calibration and operating points
  fitted on the user's labelled data (:class:`Calibration`, :func:`calibrate_manifest`), and the
  one place a decision threshold is resolved (:func:`resolve_threshold`);
- :mod:`voxvec.apps.verify`: "is this the same person?" (:func:`verify`);
- :mod:`voxvec.apps.index`: exact (numpy) and approximate (faiss, optional) cosine search;
- :mod:`voxvec.apps.store`: "who is this?": :class:`SpeakerStore` (enroll, identify, list, remove,
  rename), persisted atomically with checksums and a file lock;
- :mod:`voxvec.apps.segmentation` (and diarization): who speaks when.
"""
