"""The HTTP service behind ``voxvec serve`` (the ``serve`` extra: FastAPI and uvicorn).

A thin layer over the library: uploads are written to a private temporary folder and read with
:mod:`voxvec.audio.io` through the :class:`~voxvec.inference.Embedder`; verification,
identification, enrollment and diarization are :mod:`voxvec.apps`' own functions. What the
service adds is what a shared server needs:

- :mod:`voxvec.serve.worker`: one model, one worker thread, and the forward passes of
  concurrent requests grouped into shared batches (a bounded queue; a full queue is refused);
- :mod:`voxvec.serve.settings`: the limits (upload size, audio duration, request time, files
  per request, queue length) and the optional bearer token;
- :mod:`voxvec.serve.app`: the FastAPI application, its OpenAPI schema and the web page in
  ``static/`` (no CDN: it works offline).

Only :mod:`voxvec.serve.app` imports FastAPI.
"""
