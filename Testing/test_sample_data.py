"""The Sample Data registration: what Slicer's Sample Data module is given, and checksums that match the local copy."""

import hashlib
from pathlib import Path

from UncertaintySegSlicer.panel.sampleData import (CATEGORY, HIPPOCAMPUS_FILES, LOCAL_PATHS, RELEASE_URL, THUMBNAIL,
                                             registerSampleData)

ICONS = Path(__file__).resolve().parents[1] / "UncertaintySeg" / "Resources" / "Icons"


class RecordingSampleDataLogic:
    """Records the calls the module makes on `SampleData.SampleDataLogic` (Slicer 5.12's API: categories and sources)."""

    calls = []

    @classmethod
    def registerCustomSampleDataCategory(cls, category, title):
        cls.calls.append(("category", category, title))

    @classmethod
    def registerCustomSampleDataSource(cls, **arguments):
        cls.calls.append(("source", arguments))


class OlderSampleDataLogic:
    """Slicer before 5.12: no categories; sources only."""

    sources = []

    @classmethod
    def registerCustomSampleDataSource(cls, **arguments):
        cls.sources.append(arguments)


def test_the_hippocampus_case_is_registered_with_its_reference():
    RecordingSampleDataLogic.calls = []
    registerSampleData(RecordingSampleDataLogic, str(ICONS))
    (kind, category, _), (_, source) = RecordingSampleDataLogic.calls
    assert (kind, category) == ("category", CATEGORY)
    assert source["category"] == CATEGORY and source["thumbnailFileName"] == str(ICONS / THUMBNAIL)
    assert source["fileNames"] == ["hippocampus_011.nii.gz", "hippocampus_011_reference.nii.gz"]
    assert source["nodeNames"] == ["hippocampus_011", "hippocampus_011 reference"]
    assert source["loadFileTypes"] == ["VolumeFile", "SegmentationFile"]
    for uri, checksum in zip(source["uris"], source["checksums"]):
        digest = checksum.removeprefix("SHA256:")
        assert len(digest) == 64 and int(digest, 16) >= 0
        assert uri == RELEASE_URL + digest  # content-addressed: the URL names exactly the file the checksum describes
    OlderSampleDataLogic.sources = []
    registerSampleData(OlderSampleDataLogic, str(ICONS))
    assert OlderSampleDataLogic.sources == [source]


def test_the_thumbnail_is_a_picture_of_the_size_sample_data_shows():
    header = (ICONS / THUMBNAIL).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert (width, height) == (260, 280)


def test_checksums_are_those_of_the_local_copy(data_root):
    """The hosted files must be byte-identical to the project's copy of MSD Task04 that the tests use."""
    for sample in HIPPOCAMPUS_FILES:
        path = data_root / "Task04_Hippocampus" / LOCAL_PATHS[sample.fileName]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sample.sha256, path
