"""FGVCAircraft: images/<id>.jpg, variants.txt and the official images_variant_*.txt lists."""

import pytest

from datasets.fgvc_aircraft import FGVCAircraft
from tests.datasets.conftest import (
    check_fewshot_cache,
    check_layout_error,
    impaths,
    make_cfg,
    per_class,
    remove,
    write_image,
)

# variants.txt order is the label order; names hold spaces, a slash and digits
VARIANTS = ["Cessna 172", "707-320", "F/A-18"]
# images per variant in the train, val and test lists
SIZES = {"Cessna 172": (6, 4, 2), "707-320": (5, 4, 3), "F/A-18": (5, 5, 3)}
SPLITS = ("train", "val", "test")


def write_aircraft(root):
    """The data/ folder of fgvc-aircraft-2013b, renamed fgvc_aircraft/; returns split -> ids."""
    ds_dir = root / "fgvc_aircraft"
    (ds_dir / "images").mkdir(parents=True)
    (ds_dir / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    lines = {s: [] for s in SPLITS}
    image_id = 1000000
    for variant, sizes in SIZES.items():
        for split, n in zip(SPLITS, sizes):
            for _ in range(n):
                image_id += 1
                write_image(ds_dir / "images" / f"{image_id}.jpg", shade=image_id)
                lines[split].append(f"{image_id} {variant}")
    for split, entries in lines.items():
        (ds_dir / f"images_variant_{split}.txt").write_text("\n".join(entries) + "\n")
    (ds_dir / "images_variant_trainval.txt").write_text("")  # in the archive, unused
    return ds_dir


def test_reads_the_official_lists_and_writes_no_split_file(tmp_path):
    ds_dir = write_aircraft(tmp_path)
    before = sorted(p.name for p in ds_dir.iterdir())
    ds = FGVCAircraft(make_cfg(tmp_path, "FGVCAircraft"))
    assert ds.classnames == VARIANTS
    for i, items in enumerate((ds.train_x, ds.val, ds.test)):
        assert per_class(items) == {VARIANTS.index(v): sizes[i] for v, sizes in SIZES.items()}
    first_test = (ds_dir / "images_variant_test.txt").read_text().split()[0]
    assert impaths(ds.test)[0] == str(ds_dir / "images" / f"{first_test}.jpg")
    assert sorted(p.name for p in ds_dir.iterdir()) == before


def test_fewshot_and_cache(tmp_path):
    ds_dir = write_aircraft(tmp_path)
    # K = 4 train and min(4, 4) val per class
    ds, _ = check_fewshot_cache(FGVCAircraft, ds_dir, 4, 2, {0: 4, 1: 4, 2: 4}, {0: 4, 1: 4, 2: 4})
    assert len(ds.test) == sum(s[2] for s in SIZES.values())


@pytest.mark.parametrize("missing", ["variants.txt", "images_variant_test.txt", "images"])
def test_missing_piece_names_path_and_section(tmp_path, missing):
    ds_dir = write_aircraft(tmp_path)
    remove(ds_dir / missing)
    check_layout_error(FGVCAircraft, tmp_path, ds_dir / missing, "fgvcaircraft")


def test_variant_missing_from_variants_txt_is_named(tmp_path):
    ds_dir = write_aircraft(tmp_path)
    with open(ds_dir / "images_variant_val.txt", "a") as f:
        f.write("2000001 Boeing 747-400\n")
    with pytest.raises(ValueError, match=r'images_variant_val.txt:\d+: variant "Boeing 747-400"'):
        FGVCAircraft(make_cfg(tmp_path, "FGVCAircraft"))
