"""EuroSAT (RGB): 10 land-cover classes of Sentinel-2 patches, split per class folder 50/20/30 when
the split file is absent. The CamelCase folder names become descriptive class names, as in CoOp,
because "Annual Crop Land" gives CLIP's text encoder more to work with than "AnnualCrop"."""

from dassl.data.datasets import DATASET_REGISTRY

from .benchmark import ClassFolderDataset


@DATASET_REGISTRY.register()
class EuroSAT(ClassFolderDataset):
    dataset_dir = "eurosat"
    split_file = "split_zhou_EuroSAT.json"
    image_folder = "2750"
    new_cnames = {
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
