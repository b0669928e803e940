"""The headers: what every instance of a series says about the patient, the study, the scanner and the acquisition.

Built with :mod:`meshdcm.imagewriter` (the modules of the MR and CT Image IODs, PS3.3 A.4 and A.3); this module
adds the equipment (a fictitious 3 T MR and 64-row CT of "meshdcm General Hospital") and each sequence's MR Image
(C.8.3.1) or CT Image (C.8.2.1) attributes. Text is UTF-8 (``ISO_IR 192``).
"""

from __future__ import annotations

import datetime as _dt

from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage

from ..imagewriter import ds_text, rescale, series_header, window
from .layout import PatientSpec, StudySpec, patient_age, uid
from .protocol import Acquisition

__all__ = ["SERIES_NUMBERS", "series_start", "study_attributes", "ct_header", "mr_header"]

#: Series numbers of the protocol's series, as the scanners number them.
SERIES_NUMBERS = {"t1": 2, "t2": 3, "flair": 4, "dwi": 5, "adc": 6, "dsc": 7, "ct_thick": 2, "ct_thin": 3}
_MINUTES = {"t1": 2, "t2": 8, "flair": 11, "dwi": 15, "adc": 15, "dsc": 18, "ct_thick": 1, "ct_thin": 1}

_EQUIPMENT = {
    "MR": {"Manufacturer": "MESHDCM", "ManufacturerModelName": "Synthetic 3T", "DeviceSerialNumber": "SYN-MR-0301",
           "SoftwareVersions": "meshdcm studies 1", "InstitutionName": "meshdcm General Hospital",
           "InstitutionalDepartmentName": "Neuroradiology"},
    "CT": {"Manufacturer": "MESHDCM", "ManufacturerModelName": "Synthetic CT 64", "DeviceSerialNumber": "SYN-CT-0164",
           "SoftwareVersions": "meshdcm studies 1", "InstitutionName": "meshdcm General Hospital",
           "InstitutionalDepartmentName": "Emergency Radiology"},
}


def series_start(study: StudySpec, key: str) -> _dt.datetime:
    """When a series' acquisition starts."""
    return study.when + _dt.timedelta(minutes=_MINUTES[key])


def study_attributes(variant: str, patient: PatientSpec, study: StudySpec) -> dict[str, object]:
    """Patient, General Study, Patient Study and General Equipment attributes of a study's every instance."""
    return {
        "SpecificCharacterSet": "ISO_IR 192",
        "PatientName": patient.name,
        "PatientID": patient.id,
        "IssuerOfPatientID": "MESHDCM",
        "PatientBirthDate": patient.birth_date,
        "PatientSex": patient.sex,
        "PatientAge": patient_age(patient, study.when.date()),
        "PatientSize": ds_text(patient.height),
        "PatientWeight": ds_text(patient.weight),
        "StudyInstanceUID": uid(variant, patient.key, study.key, "study"),
        "StudyDate": study.date,
        "StudyTime": study.time,
        "AccessionNumber": study.accession,
        "StudyID": study.study_id,
        "StudyDescription": study.description,
        "ReferringPhysicianName": "STROKE^UNIT",
        **_EQUIPMENT[study.modality],
        "StationName": study.station,
        "BodyPartExamined": "HEAD",
        "PatientPosition": "HFS",
    }


def _series(variant: str, patient: PatientSpec, study: StudySpec, a: Acquisition, sop_class: str,
            modality: str) -> Dataset:
    ds = series_header(study_attributes(variant, patient, study), sop_class_uid=sop_class, modality=modality,
                       series_uid=uid(variant, patient.key, study.key, a.key), series_number=SERIES_NUMBERS[a.key],
                       series_description=a.description, image_type=a.image_type,
                       frame_of_reference_uid=uid(variant, patient.key, study.key, "frame-of-reference"))
    start = series_start(study, a.key)
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = ds.InstanceCreationDate = start.strftime("%Y%m%d")
    ds.SeriesTime = start.strftime("%H%M%S")
    ds.InstanceCreationTime = ds.SeriesTime
    ds.ProtocolName = a.description
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def mr_header(variant: str, patient: PatientSpec, study: StudySpec, a: Acquisition) -> Dataset:
    """An MR series' header (MR Image module, C.8.3.1, with the sequence's parameters)."""
    ds = _series(variant, patient, study, a, MRImageStorage, "MR")
    p = a.mr
    ds.MagneticFieldStrength = "3"
    ds.ImagingFrequency = "123.2"
    ds.ImagedNucleus = "1H"
    ds.TransmitCoilName = "Body"
    ds.ReceiveCoilName = "HeadNeck_32"
    ds.ScanningSequence = p["scanning_sequence"]
    ds.SequenceVariant = p["sequence_variant"]
    ds.ScanOptions = p["scan_options"]
    ds.MRAcquisitionType = p["acquisition"]
    ds.SequenceName = p["sequence_name"]
    ds.AngioFlag = "N"
    ds.RepetitionTime = ds_text(p["tr"])
    ds.EchoTime = ds_text(p["te"])
    if "ti" in p:
        ds.InversionTime = ds_text(p["ti"])
    ds.FlipAngle = ds_text(p["fa"])
    ds.NumberOfAverages = "1"
    ds.EchoNumbers = "1"
    ds.EchoTrainLength = str(p["etl"])
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = str(p["bandwidth"])
    ds.AcquisitionMatrix = [0, a.matrix, a.matrix, 0]
    ds.InPlanePhaseEncodingDirection = "COL" if a.plane == "axial" else "ROW"
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.4"
    ds.dBdt = "0"
    return ds


def ct_header(variant: str, patient: PatientSpec, study: StudySpec, a: Acquisition) -> Dataset:
    """A CT series' header (CT Image module, C.8.2.1): HU = stored - 1024, brain window 40/80 first."""
    ds = _series(variant, patient, study, a, CTImageStorage, "CT")
    p = a.ct
    ds.ScanOptions = "HELICAL MODE"
    ds.KVP = str(p["kvp"])
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = ds_text(a.fov)
    ds.DistanceSourceToDetector = "1085.6"
    ds.DistanceSourceToPatient = "595"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "145"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "1000"
    ds.XRayTubeCurrent = str(p["ma"])
    ds.Exposure = str(p["ma"])
    ds.FilterType = "0"
    ds.GeneratorPower = "38"
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = p["kernel"]
    ds.RevolutionTime = 1.0
    ds.SingleCollimationWidth = 0.6
    ds.TotalCollimationWidth = 38.4
    ds.SpiralPitchFactor = 0.55
    ds.CTDIvol = 52.4
    rescale(ds, "1", "-1024", "HU")
    window(ds, ["40", "80"], ["80", "2500"], ["BRAIN", "BONE"])
    return ds
