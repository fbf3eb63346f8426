"""Analyses of finished runs (python -m facebench.analyze): each measurement on a case whose answer
is known (planted sparsity, a planted selective neuron, an occluder that removes all signal, an
exact pruning density), the attribute readers, the LBP backbone, and the command end to end on a
tiny synthetic run: outputs written beside the record, the record untouched, results merged."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY
from facebench import analyze
from facebench.analysis import AnalysedRun, AnalysisError
from facebench.config import ConfigError, compose
from facebench.data.attributes import read_attributes
from facebench.run import execute
from facebench.testing import check_backbone
from facebench_plugins.analyses.binary import binary_codes
from facebench_plugins.analyses.occlusion import occlude
from facebench_plugins.analyses.single_neuron import fit_thresholds, selectivity
from facebench_plugins.analyses.sparsification import fisher_ratio, keep_mask, prune_layers
from facebench_plugins.analyses.sparsity import SparsityAnalysis, SparsityConfig, sparsity_report
from facebench_plugins.lbp import CODES, LbpBackbone, LbpConfig, cell_histograms

pytestmark = pytest.mark.usefixtures("one_thread")


# --- single neurons ---------------------------------------------------------------------------

def test_thresholds_are_the_best_a_brute_force_finds() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(40, 5)).astype(float)  # ties on purpose
    y = rng.random(40) < 0.4
    fitted = fit_thresholds(x, y)
    for j in range(x.shape[1]):
        cuts = np.concatenate([[x[:, j].min() - 1], np.unique(x[:, j]) + 0.5])
        best = max(max(((x[:, j] > t) == y).mean(), ((x[:, j] < t) == y).mean()) for t in cuts)
        assert fitted.accuracy[j] == pytest.approx(best)
        assert (fitted.predict(x)[:, j] == y).mean() == pytest.approx(best)


def test_a_planted_selective_neuron_is_found_and_scored_on_held_out_data() -> None:
    rng = np.random.default_rng(1)
    y = np.arange(200) < 100
    x = rng.normal(size=(200, 30))
    x[:, 7] = y * 2.0 + rng.normal(scale=0.1, size=200)  # fires for the person only
    x[:, 11] = -3.0 * y + rng.normal(scale=0.1, size=200)  # silenced by the person
    found = selectivity(x, y, rng)
    assert found.best_neuron in (7, 11) and found.best_accuracy == 1.0
    assert (found.excitatory, found.inhibitory) == (7, 11)
    others = np.delete(found.per_neuron, [7, 11])
    assert abs(np.median(others) - 0.5) < 0.08  # pure noise: chance, not the optimism of a tuned cut


# --- sparsity, binary codes -------------------------------------------------------------------

def test_planted_sparsity_is_measured_per_image_and_per_neuron() -> None:
    rng = np.random.default_rng(2)
    active = rng.random((4000, 64)) < 0.3
    active[:, :8] = False  # 8 dead neurons
    features = active * rng.uniform(0.1, 2.0, size=active.shape)
    report = sparsity_report(np.concatenate([features[:2000], features[2000:]], axis=1), neurons=64)
    assert report["flip_halves_split"] and report["images"] == 4000
    assert report["active_neurons_per_image_mean"] == pytest.approx(0.3 * 56 / 64, abs=0.01)
    assert report["images_per_neuron_mean"] == pytest.approx(0.3 * 56 / 64, abs=0.01)
    assert report["dead_neurons"] == 8


def sparsity_finding(features: np.ndarray) -> bool:
    """The sparsity finding on one unit whose test images are ``features``."""
    unit = SimpleNamespace(unit="fold1", features=features)
    run = SimpleNamespace(units=[unit], neurons=features.shape[1], label="planted",
                          test_index=lambda name: np.arange(len(features)))
    return SparsityAnalysis(SparsityConfig()).analyse(run).findings[0].holds


def test_sparsity_is_judged_on_the_spread_not_only_the_means() -> None:
    rng = np.random.default_rng(3)
    half_at_random = (rng.random((2000, 64)) < 0.5).astype(float)
    always_or_never = np.zeros((2000, 64))
    always_or_never[:, :32] = 1.0  # half the neurons always on, half dead: both means are 50%
    assert sparsity_finding(half_at_random)
    assert not sparsity_finding(always_or_never)


def test_binary_codes_keep_only_which_neurons_are_active() -> None:
    assert binary_codes(np.array([[0.0, 2.5, -1.0, 1e-6]])).tolist() == [[0.0, 1.0, 0.0, 1.0]]


# --- occlusion --------------------------------------------------------------------------------

def test_occluders_cover_the_share_of_the_face_asked_for() -> None:
    images = np.full((5, 20, 10, 3), 200, np.uint8)
    fill = np.zeros(3, np.uint8)
    rng = np.random.default_rng(0)
    bottom = occlude(images, "bottom", 0.3, rng, fill)
    assert (bottom[:, 14:] == 0).all() and (bottom[:, :14] == 200).all()
    top = occlude(images, "top", 0.3, rng, fill)
    assert (top[:, :6] == 0).all() and (top[:, 6:] == 200).all()
    block = occlude(images, "random", 0.2, rng, fill)
    covered = (block[..., 0] == 0).mean(axis=(1, 2))
    assert np.allclose(covered, 0.2, atol=0.03)
    assert (occlude(images, "random", 1.0, rng, fill) == 0).all()
    assert (occlude(images, "top", 0.0, rng, fill) == images).all() and images.max() == 200  # never in place


# --- sparsification ---------------------------------------------------------------------------

def test_pruning_keeps_exactly_the_share_asked_for_and_the_largest_weights() -> None:
    layer = torch.nn.Linear(40, 16)
    mask = keep_mask(layer.weight.detach().abs(), 0.125)
    assert mask.sum().item() == 80  # 1/8 of 640
    kept = layer.weight.detach().abs()[mask.bool()]
    assert kept.min() >= layer.weight.detach().abs()[~mask.bool()].max()
    net = torch.nn.Sequential(layer)
    prune_layers(net, {"0": mask})
    assert (net[0].weight[~mask.bool()] == 0).all()
    net(torch.randn(3, 40)).sum().backward()
    assert (net[0].weight_orig.grad[~mask.bool()] == 0).all()  # pruned connections stay pruned


def test_fisher_ratio_ranks_a_neuron_that_separates_people_first() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 20)
    x = rng.normal(size=(200, 5))
    x[:, 3] += labels * 3.0
    assert np.argmax(fisher_ratio(x, labels)) == 3


# --- attribute files --------------------------------------------------------------------------

def test_celeba_and_lfw_attribute_files_are_read_and_matched_by_file_stem(tmp_path: Path) -> None:
    celeba = tmp_path / "list_attr_celeba.txt"
    celeba.write_text("2\nMale Smiling\n000001.jpg  1 -1\n000002.jpg -1  1\n")
    table = read_attributes(celeba)
    assert table.names == ["Male", "Smiling"] and table.stems == ["000001", "000002"]
    assert table.values.tolist() == [[1, -1], [-1, 1]]
    lfw = tmp_path / "lfw_attributes.txt"
    lfw.write_text("# Attributes for LFW\n#\tperson\timagenum\tMale\tAsian\nAaron Eckhart\t1\t1.57\t-0.3\n"
                   "George W Bush\t12\t-0.2\t0.9\n")
    table = read_attributes(lfw)
    assert table.names == ["Male", "Asian"] and table.stems == ["Aaron_Eckhart_0001", "George_W_Bush_0012"]


@pytest.mark.parametrize("text, message", [
    ("2\nMale Smiling\n000001.jpg 1 -1\n", "announces 2 images"),
    ("1\nMale Smiling\n000001.jpg 1\n", ":3: expected 2 attribute values"),
    ("1\nMale Smiling\n000001.jpg 1 __import__\n", ":3: '__import__' is not a number"),
    ("#\tperson\timagenum\tMale\nAaron Eckhart\tone\t1.0\n", ":2: expected a person's name"),
])
def test_a_malformed_attribute_file_is_refused_naming_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "attrs.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_attributes(path)
    assert str(path) in str(info.value)


# --- LBP --------------------------------------------------------------------------------------

def test_lbp_histograms_match_scikit_image_and_a_flat_face_is_one_code() -> None:
    from skimage.feature import local_binary_pattern

    check_backbone("lbp", {"height": 24, "width": 20, "grid": [2, 2]})
    net = LbpBackbone(LbpConfig(height=24, width=20, radii=[1, 2], grid=[2, 2], sqrt=False))
    image = np.random.default_rng(4).integers(0, 256, (24, 20)).astype(np.uint8)
    x = torch.from_numpy(np.repeat(image[None, None], 3, axis=1)).float() / 127.5 - 1.0
    feature = net(x)["feature"][0].numpy()
    expected = np.concatenate([cell_histograms(local_binary_pattern(image, 8, r, method="uniform"), (2, 2)) for r in (1, 2)])
    assert np.allclose(feature, expected) and net.feature_dim == 2 * 4 * CODES
    flat = net(torch.zeros(1, 3, 24, 20))["feature"][0].numpy().reshape(-1, CODES)
    # every neighbour >= the centre: the uniform code of all ones, except where a circle leaves the face
    assert (flat.argmax(axis=1) == 8).all() and (flat[:, 8] > 0.6).all()


# --- the command on finished runs -------------------------------------------------------------

RUN = [*TINY, "device=cpu", "trainer.steps=8", "+method=deepid2", "backbone.batchnorm=true", "trainer.resume=true"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysed")
    runs = {}
    for name, overrides in (("learned", RUN), ("pixels", [*TINY, "device=cpu", "+method=pixels"])):
        cfg = compose([*overrides, f"results_root={root}", f"label={name}"])
        execute(cfg, root / name)
        runs[name] = root / name
    return runs


FAST = ["max_units=1", "analysis.occlusion.levels=[0.0,0.5,1.0]", "analysis.occlusion.patterns=[bottom,random]"]


def test_the_command_writes_its_results_beside_the_record_and_never_changes_it(tiny_runs: dict[str, Path]) -> None:
    run_dir = tiny_runs["learned"]
    record = (run_dir / "metrics.json").read_bytes()
    assert analyze.main([str(run_dir), *FAST]) == 0
    assert (run_dir / "metrics.json").read_bytes() == record
    document = json.loads((run_dir / "analysis.json").read_text())
    assert set(document["analyses"]) == {"sparsity", "binary", "selectivity", "occlusion"}
    for entry in document["analyses"].values():
        assert entry["findings"] and all((run_dir / f).is_file() for f in entry["figures"])
    binary = document["analyses"]["binary"]["summary"]
    assert binary["reproduces_record"]  # the run's own features, re-scored, give the record's accuracy
    occlusion = document["analyses"]["occlusion"]["summary"]["accuracy"]
    assert occlusion["bottom"][2] == 0.5 and occlusion["random"][2] == 0.5  # all signal covered: chance
    assert occlusion["bottom"][0] == pytest.approx(binary["real_run_verifier"]["mean_accuracy"])
    page = (run_dir / "analysis.html").read_text()
    assert "analysis_occlusion_curves.png" in page and "<script" not in page
    # Asking for one analysis later keeps the others' results.
    assert analyze.main([str(run_dir), "analysis=[sparsity]", "analysis.sparsity.band=[0.0,1.0]", "max_units=1"]) == 0
    again = json.loads((run_dir / "analysis.json").read_text())
    assert set(again["analyses"]) == set(document["analyses"])
    assert again["analyses"]["sparsity"]["findings"][0]["holds"] is True
    assert again["analyses"]["occlusion"] == document["analyses"]["occlusion"]


def test_a_result_already_measured_for_the_same_config_and_units_is_kept(tiny_runs: dict[str, Path],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from facebench_plugins.analyses.occlusion import OcclusionAnalysis

    run_dir = tiny_runs["learned"]
    assert analyze.main([str(run_dir), "analysis=[occlusion]", *FAST]) == 0
    before = json.loads((run_dir / "analysis.json").read_text())["analyses"]["occlusion"]

    def measured_again(self, run):  # type: ignore[no-untyped-def]
        raise AssertionError("measured again")

    monkeypatch.setattr(OcclusionAnalysis, "analyse", measured_again)
    assert analyze.main([str(run_dir), "analysis=[occlusion]", *FAST]) == 0
    assert json.loads((run_dir / "analysis.json").read_text())["analyses"]["occlusion"] == before
    with pytest.raises(AssertionError, match="measured again"):
        analyze.main([str(run_dir), "analysis=[occlusion]", *FAST, "rerun=true"])


def test_several_runs_are_compared_with_the_untrained_one_as_the_floor(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "side"
    code = analyze.main([str(tiny_runs["learned"]), str(tiny_runs["pixels"]), "analysis=[selectivity,occlusion]",
                         *FAST, f"out={out}"])
    assert code == 0
    compared = json.loads((out / "compare.json").read_text())
    assert {d["label"] for d in compared["runs"]} == {"learned", "pixels"}
    claims = [f["claim"] for entry in compared["across_runs"].values() for f in entry["findings"]]
    assert any("no-training baselines" in c for c in claims) and any("floors" in c for c in claims)
    markdown = (out / "compare.md").read_text()
    assert "(across runs)" in markdown and "| pixels |" in markdown
    assert (out / "compare_occlusion_occlusion.png").is_file()


def test_sparsification_prunes_retrains_and_trains_the_sparse_structure_from_scratch(tiny_runs: dict[str, Path]) -> None:
    run_dir = tiny_runs["learned"]
    assert analyze.main([str(run_dir), "analysis=[sparsification]", "analysis.sparsification.steps=3"]) == 0
    summary = json.loads((run_dir / "analysis.json").read_text())["analyses"]["sparsification"]["summary"]
    assert set(summary["kept_share"][summary["units"][0]]) == {"conv4.0", "fc"}
    assert all(v == pytest.approx(0.125, abs=1e-3) for v in summary["kept_share"][summary["units"][0]].values())
    assert all(0 <= summary[k]["mean_accuracy"] <= 1 for k in ("dense", "pruned", "retrained", "scratch"))


def test_what_cannot_be_analysed_is_refused_with_the_fix(tiny_runs: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert analyze.main([str(tmp_path)]) == 2
    assert "no record" in capsys.readouterr().err
    assert analyze.main([str(tiny_runs["learned"]), "analysis=[attributes]"]) == 2
    assert "set analysis.attributes.file" in capsys.readouterr().err
    assert analyze.main([str(tiny_runs["pixels"]), "analysis=[sparsification]"]) == 2
    assert "learns nothing" in capsys.readouterr().err
    with pytest.raises(AnalysisError, match="no checkpoint for"):
        AnalysedRun(tiny_runs["learned"], checkpoint_dir=tmp_path).units  # noqa: B018
    assert analyze.main([str(tiny_runs["learned"]), "analysis.occlusion.fill=grey"]) == 2
    assert "fill='grey'" in capsys.readouterr().err


def test_attribute_selectivity_reads_labels_matched_to_the_benchmark_images(tiny_runs: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    run = AnalysedRun(tiny_runs["learned"], max_units=1)
    keys, labels = run.bench.faces.keys, run.bench.faces.labels
    path = tmp_path / "list_attr_celeba.txt"
    lines = [f"{Path(k).name} {1 if labels[i] % 2 else -1} {1 if i % 3 else -1}" for i, k in enumerate(keys)]
    path.write_text(f"{len(keys) + 1}\nOdd_Person Every_Third\n" + "\n".join(lines) + "\nnot_an_image.png 1 1\n")
    assert analyze.main([str(tiny_runs["learned"]), "analysis=[attributes]", f"analysis.attributes.file={path}",
                         "analysis.attributes.min_images=5", "max_units=1"]) == 0
    summary = json.loads((tiny_runs["learned"] / "analysis.json").read_text())["analyses"]["attributes"]["summary"]
    assert summary["images_matched"] == len(keys)  # every benchmark image; the stray line is ignored
    assert set(summary["attributes"]) == {"Odd_Person", "Every_Third"}
    assert all(0 <= v["best_accuracy"] <= 1 for v in summary["attributes"].values())


def test_a_run_written_before_a_setting_existed_is_rebuilt_with_its_default(tiny_runs: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    """A config.yaml from before ``backbone.feature_relu`` existed: the analysis finds the run's
    checkpoints under the key of the config as written and builds the net the run trained."""
    import shutil

    from omegaconf import OmegaConf

    from facebench.run import checkpoint_key

    source = tiny_runs["learned"]
    cfg = OmegaConf.load(source / "config.yaml")
    older = cfg.copy()
    del older.backbone["feature_relu"]
    root = Path(cfg.results_root)
    shutil.copytree(root / "checkpoints" / checkpoint_key(cfg), root / "checkpoints" / checkpoint_key(older),
                    dirs_exist_ok=True)
    run_dir = tmp_path / "older"
    run_dir.mkdir()
    shutil.copyfile(source / "metrics.json", run_dir / "metrics.json")
    OmegaConf.save(older, run_dir / "config.yaml")
    then, now = AnalysedRun(run_dir, max_units=1), AnalysedRun(source, max_units=1)
    assert then.cfg.backbone.feature_relu is True
    np.testing.assert_array_equal(then.units[0].features, now.units[0].features)


def test_a_verifier_is_fitted_once_per_unit_and_fitting_data(tiny_runs: dict[str, Path]) -> None:
    run = AnalysedRun(tiny_runs["learned"], max_units=1)
    model = run.units[0]
    first = run.evaluate({model.name: model.features})
    moved = model.features.copy()
    moved[run.test_index(model.unit)] *= -1.0  # only test images change: the fit is reused
    run.evaluate({model.name: moved})
    assert len(run._fitted) == 1
    assert run.evaluate({model.name: model.features}) == first
