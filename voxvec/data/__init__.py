"""Data: ``path,speaker`` manifests, corpus preparation, datasets, samplers and augmentation.

Only the manifest API is re-exported here; import the other modules directly (they pull in
heavier dependencies).
"""

from voxvec.data.manifest import ManifestItem, read_manifest, split_by_speaker, write_manifest

__all__ = ["ManifestItem", "read_manifest", "split_by_speaker", "write_manifest"]
