"""bundle.json loading: the happy path, and one refusal per way a bundle can disagree with itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_fixtures import LABELS, N_GENES, copy_bundle, edit_bundle_json, make_bundle, make_decoder_onnx
from vaexprs.bundle.sampler import LatentSampler
from vaexprs.bundle.schema import (
    FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    check_graph_signature,
    load_bundle,
    write_bundle_json,
)
from vaexprs.errors import InputError
from vaexprs.files import file_sha256


@pytest.fixture(scope="module")
def cvae_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "cvae", conditional=True)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "vae", conditional=False)


@pytest.fixture
def tampered(cvae_dir, tmp_path) -> Path:
    return copy_bundle(cvae_dir, tmp_path / "b")


def test_load_cvae_bundle(cvae_dir):
    b = load_bundle(cvae_dir)
    assert FORMAT_VERSION in SUPPORTED_FORMAT_VERSIONS
    assert b.is_conditional and b.model_type == "cvae"
    assert b.n_genes == N_GENES and b.genes[0] == "gene1"
    assert b.labels == LABELS
    assert np.allclose(b.proportions, [0.5, 0.3, 0.2])
    assert b.decoder_path == cvae_dir.resolve() / "decoder.onnx"
    assert isinstance(b.sampler, LatentSampler) and len(b.sampler.mixtures) == 3
    assert [s.name for s in b.decoder.inputs] == ["z", "label_onehot"]
    assert b.extra == {} and b.provenance["n_cells"] == 300
    # the bundle.json file itself is accepted too
    assert load_bundle(cvae_dir / "bundle.json").genes == b.genes


def test_load_vae_bundle(vae_dir):
    b = load_bundle(vae_dir)
    assert not b.is_conditional and b.labels == [] and b.proportions.size == 0
    assert len(b.sampler.mixtures) == 1


def test_write_bundle_json_is_atomic_and_leaves_no_temp(tmp_path):
    target = write_bundle_json(tmp_path, {"a": 1})
    assert target == tmp_path / "bundle.json" and json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        write_bundle_json(tmp_path, {"a": float("nan")})  # refuses NaN; the old file stays
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.json"]


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(InputError, match=r"does not exist"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(InputError, match=r"has no bundle.json"):
        load_bundle(tmp_path)


def test_invalid_json(tampered):
    (tampered / "bundle.json").write_text("{not json")
    with pytest.raises(InputError, match=r"not valid JSON"):
        load_bundle(tampered)


def test_tampered_decoder_sha256(tampered):
    with open(tampered / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match=r"decoder.onnx sha256 mismatch: bundle.json says .*file changed after export"):
        load_bundle(tampered)


def test_missing_decoder_file(tampered):
    (tampered / "decoder.onnx").unlink()
    with pytest.raises(InputError, match=r"has no decoder.onnx"):
        load_bundle(tampered)


@pytest.mark.parametrize("field", ["genes", "labels", "sampler", "onnx", "likelihood", "latent_dim"])
def test_missing_field_is_named(tampered, field):
    edit_bundle_json(tampered, **{field: ...})
    with pytest.raises(InputError, match=rf"bundle.json is missing field '{field}'"):
        load_bundle(tampered)


@pytest.mark.parametrize("version", [2, 0, "1", ...])
def test_bad_format_version(tampered, version):
    edit_bundle_json(tampered, format_version=version)
    with pytest.raises(InputError, match=r"format_version"):
        load_bundle(tampered)


def test_wrong_type_is_named(tampered):
    edit_bundle_json(tampered, latent_dim="2")
    with pytest.raises(InputError, match=r"'latent_dim' must be an integer"):
        load_bundle(tampered)


def test_bad_model_type(tampered):
    edit_bundle_json(tampered, model_type="gan")
    with pytest.raises(InputError, match=r"model_type must be one of vae, cvae; got 'gan'"):
        load_bundle(tampered)


def test_labels_and_proportions_disagree(tampered):
    edit_bundle_json(tampered, label_proportions=[0.5, 0.5])
    with pytest.raises(InputError, match=r"3 labels but 2 label_proportions"):
        load_bundle(tampered)


def test_cvae_without_labels_and_vae_with_labels(tampered, vae_dir, tmp_path):
    edit_bundle_json(tampered, labels=[], label_proportions=[])
    with pytest.raises(InputError, match=r"cvae but bundle.json field 'labels' is empty"):
        load_bundle(tampered)
    vae = copy_bundle(vae_dir, tmp_path / "vae")
    edit_bundle_json(vae, labels=["a"], label_proportions=[1.0])
    with pytest.raises(InputError, match=r"model_type is vae but bundle.json lists 1 labels"):
        load_bundle(vae)


def test_duplicate_genes(tampered):
    genes = [f"gene{i + 1}" for i in range(N_GENES)]
    genes[7] = "gene1"
    edit_bundle_json(tampered, genes=genes)
    with pytest.raises(InputError, match=r"duplicate names: gene1"):
        load_bundle(tampered)


def test_gene_count_disagrees_with_decoder_output(tampered):
    edit_bundle_json(tampered, genes=[f"g{i}" for i in range(N_GENES - 1)])
    with pytest.raises(InputError, match=rf"{N_GENES - 1} genes but decoder output 'x_mean' has shape"):
        load_bundle(tampered)


def test_latent_dim_disagrees(tampered):
    edit_bundle_json(tampered, latent_dim=3)
    with pytest.raises(InputError, match=r"latent_dim is 3 but sampler.latent_dim is 2"):
        load_bundle(tampered)


def test_sampler_mixture_count_disagrees(tampered):
    data = json.loads((tampered / "bundle.json").read_text())
    data["sampler"]["mixtures"] = data["sampler"]["mixtures"][:2]
    write_bundle_json(tampered, data)
    with pytest.raises(InputError, match=r"sampler has 2 mixture"):
        load_bundle(tampered)


def test_graph_signature_mismatch(tmp_path, cvae_dir):
    """bundle.json says the latent input is 'z'; a graph whose input is 'latent' is refused by name."""
    import onnxruntime as ort

    folder = copy_bundle(cvae_dir, tmp_path / "b")
    make_decoder_onnx(folder / "decoder.onnx", n_labels=3, z_name="latent")
    data = json.loads((folder / "bundle.json").read_text())
    data["onnx"]["decoder"]["sha256"] = file_sha256(folder / "decoder.onnx")
    write_bundle_json(folder, data)
    b = load_bundle(folder)  # bundle.json agrees with itself; the graph does not
    sess = ort.InferenceSession(str(b.decoder_path), providers=["CPUExecutionProvider"])
    with pytest.raises(InputError, match=r"decoder.onnx inputs are \['latent', 'label_onehot'\] but bundle.json"):
        check_graph_signature(b, sess.get_inputs(), sess.get_outputs())


def test_graph_output_width_mismatch(tmp_path, cvae_dir):
    """A decoder with 40 outputs against a bundle.json of 50 genes: named in the message."""
    import onnxruntime as ort

    folder = copy_bundle(cvae_dir, tmp_path / "b")
    make_decoder_onnx(folder / "decoder.onnx", n_labels=3, n_genes=40)
    b = load_bundle(folder, verify_sha256=False)
    sess = ort.InferenceSession(str(b.decoder_path), providers=["CPUExecutionProvider"])
    with pytest.raises(InputError, match=r"output 'x_mean' has shape \['batch', 40\] but bundle.json records"):
        check_graph_signature(b, sess.get_inputs(), sess.get_outputs())
