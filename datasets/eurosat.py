"""EuroSAT (RGB): 10 land-cover classes of Sentinel-2 patches, split per class folder 50/20/30 when
the split file is absent. The CamelCase folder names become descriptive class names, as in CoOp,
because "Annual Crop Land" gives CLIP's text encoder more to work with than "AnnualCrop"."""

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import read_and_split_data

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(BenchmarkDataset):
    dataset_dir = "eurosat"
    split_file = "split_zhou_EuroSAT.json"
    image_folder = "2750"

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
