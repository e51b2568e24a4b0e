"""The "clinical-size" CT of performance.md: TotalSegmentator's 1.5 mm aorta CT resampled to 0.8 x 0.8 x 1.5 mm
(about 437 x 313 x 191 voxels, typical of a 512 x 512 x 300 scan).

    python benchmarks/make_clinical_ct.py OUT.nii.gz [--source SOURCE.nii.gz]
"""

from __future__ import annotations

import argparse

import SimpleITK as sitk

from MedSegEfficientLib.io.sample_data import sample_paths


def make_clinical_ct(source: str, output: str) -> None:
    image = sitk.ReadImage(source)
    spacing = (0.8, 0.8, 1.5)
    size = [int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing,
                              image.GetDirection(), -1024, sitk.sitkInt16)
    sitk.WriteImage(resampled, output, useCompression=True)
    print(f"wrote {output}: {resampled.GetSize()} at {spacing} mm")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--source", help="the 1.5 mm aorta CT (default: fetched with `medseg sample-data`)")
    args = parser.parse_args()
    make_clinical_ct(args.source or str(sample_paths()["aorta_ct"]), args.output)
