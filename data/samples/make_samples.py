"""Regenerate the demo sample images in this folder from packages installed with vlkit's extras.

Run from anywhere:  python data/samples/make_samples.py

Every file comes from a package's bundled data (scikit-image, scikit-learn, matplotlib,
pydicom), so nothing is downloaded. Photos are shrunk so the longer side is at most 512 pixels
and saved as JPEG quality 90; the small grayscale retina crop stays PNG so its fine detail keeps
no JPEG artefacts; the DICOM file is copied byte for byte. The output is byte-identical as long
as Pillow (and its libjpeg) and the source packages are the same versions. See SOURCES.md for
where each image comes from and under what terms.
"""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
LONGEST_SIDE = 512


def skimage_image(name):
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def sklearn_china():
    from sklearn.datasets import load_sample_images

    images = load_sample_images()
    index = [Path(name).name for name in images.filenames].index("china.jpg")
    return Image.fromarray(images.images[index])


def matplotlib_grace_hopper():
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        return Image.open(file).convert("RGB")


# Output name -> function returning a PIL image (or, for DICOM, the file to copy).
SAMPLES = {
    "astronaut.jpg": lambda: skimage_image("astronaut"),
    "chelsea.jpg": lambda: skimage_image("chelsea"),
    "coffee.jpg": lambda: skimage_image("coffee"),
    "retina.jpg": lambda: skimage_image("retina"),
    "microaneurysms.png": lambda: skimage_image("microaneurysms"),
    "immunohistochemistry.jpg": lambda: skimage_image("immunohistochemistry"),
    "china.jpg": sklearn_china,
    "grace_hopper.jpg": matplotlib_grace_hopper,
}


def shrink(image):
    """Scale down (never up) so the longer side is at most LONGEST_SIDE pixels."""
    scale = LONGEST_SIDE / max(image.size)
    if scale >= 1:
        return image
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.LANCZOS)


def save(image, path):
    if path.suffix == ".png":
        image.save(path, format="PNG", optimize=True)
    else:
        # No EXIF, no progressive encoding, fixed quality: the same bytes on every run.
        image.convert("RGB").save(path, format="JPEG", quality=90)


def main():
    for name, load in SAMPLES.items():
        image = shrink(load())
        save(image, HERE / name)
        print(f"{name:26} {image.width}x{image.height} {image.mode:4} {np.asarray(image).dtype}")

    from pydicom.data import get_testdata_file

    shutil.copyfile(get_testdata_file("CT_small.dcm"), HERE / "CT_small.dcm")
    print(f"{'CT_small.dcm':26} copied as-is")

    total = sum(path.stat().st_size for path in HERE.iterdir() if path.is_file())
    print(f"folder total: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
