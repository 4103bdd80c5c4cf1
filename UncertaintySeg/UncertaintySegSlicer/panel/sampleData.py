"""The extension's Sample Data: one hippocampus MRI with its reference segmentation (MSD Task04, CC-BY-SA 4.0).

Registered with Slicer's Sample Data module at startup (`registerSampleData(SampleData.SampleDataLogic, iconsPath)`);
free of Qt and slicer, so the registration and the checksums are tested here.

The files are the project's copy of MSD Task04 `hippocampus_011` (a case of the project's `test` split, so
the bundled models never trained on it), as `../shared/data/Task04_Hippocampus` holds it: the Decathlon
case re-saved as uint8 with a 1 mm affine. They are to be published as assets of the project's GitHub
release `SHA256`, each named by its SHA-256 (Slicer's own convention for testing data), so a URL names
exactly one content and Slicer's Sample Data module checks what it downloads against it. The hosted copy
must be byte-identical to the local one: `Testing/test_sample_data.py` recomputes these checksums from
the local files.
"""

import os
from dataclasses import dataclass

CATEGORY = "UncertaintySeg"
RELEASE_URL = "https://github.com/UncertaintySeg/SlicerUncertaintySeg/releases/download/SHA256/"
THUMBNAIL = "SampleHippocampus.png"


@dataclass(frozen=True)
class SampleFile:
    fileName: str
    nodeName: str
    sha256: str
    loadFileType: str  # Slicer's reader: "VolumeFile", "SegmentationFile"

    @property
    def uri(self):
        return RELEASE_URL + self.sha256

    @property
    def checksum(self):
        return f"SHA256:{self.sha256}"


HIPPOCAMPUS_CASE = "hippocampus_011"
HIPPOCAMPUS_FILES = (
    # Task04_Hippocampus/imagesTr/hippocampus_011.nii.gz (80,048 bytes)
    SampleFile("hippocampus_011.nii.gz", "hippocampus_011", "3a62699eda80d6ed9c927991cdc7b60ce6db61f9e33f37c6302c036f861e7dae",
               "VolumeFile"),
    # Task04_Hippocampus/labelsTr/hippocampus_011.nii.gz (1,580 bytes): 1 anterior, 2 posterior; loaded as a segmentation
    # whose segments follow the label values, so the panel matches them to the model's classes by order.
    SampleFile("hippocampus_011_reference.nii.gz", "hippocampus_011 reference",
               "8cc8f7fc4edcdc19f2ce6feb0691e7a2e692fef1e90a322b34176d4bc34d16d7", "SegmentationFile"),
)
# Where each file lies in the MSD Task04 folder, for checking the checksums against a local copy.
LOCAL_PATHS = {"hippocampus_011.nii.gz": "imagesTr/hippocampus_011.nii.gz",
               "hippocampus_011_reference.nii.gz": "labelsTr/hippocampus_011.nii.gz"}


def registerSampleData(sampleDataLogic, iconsPath):
    """Register the hippocampus case with Slicer's Sample Data module (`SampleData.SampleDataLogic`)."""
    if hasattr(sampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer 5.12 and later
        sampleDataLogic.registerCustomSampleDataCategory(CATEGORY, title="UncertaintySeg")
    files = HIPPOCAMPUS_FILES
    sampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName="Hippocampus MRI with reference",
        thumbnailFileName=os.path.join(iconsPath, THUMBNAIL),
        uris=[f.uri for f in files],
        fileNames=[f.fileName for f in files],
        nodeNames=[f.nodeName for f in files],
        checksums=[f.checksum for f in files],
        loadFileTypes=[f.loadFileType for f in files],
    )
