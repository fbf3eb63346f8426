from __future__ import annotations

import pytest
from omegaconf.errors import ValidationError

from facebench.config import ConfigError, compose, reject_code_targets
from facebench.run import plan_run


def test_default_composes_to_offline_synthetic() -> None:
    cfg = compose()
    assert cfg.data.name == "synthetic" and cfg.protocol.name == "synthetic"
    assert cfg.hydra.runtime.choices.backbone == "deepid"


def test_method_preset_sets_components() -> None:
    cfg = compose(["+method=pixels"])
    assert cfg.method == "pixels" and cfg.backbone.name == "pixels" and cfg.verifier.pca_dim == 128


def test_data_lfw_selects_lfw_view2_and_folds_are_typed(tmp_path) -> None:
    cfg = compose(["data=lfw", f"data.root={tmp_path}", "protocol.folds=[1,2,3]"])
    assert cfg.protocol.name == "lfw_view2" and list(cfg.protocol.folds) == [1, 2, 3]
    cfg = compose(["data=lfw", "protocol=lfw_view1"])
    assert cfg.protocol.name == "lfw_view1"


def test_string_for_a_float_fails_with_the_key_named() -> None:
    with pytest.raises(Exception) as err:
        compose(["trainer.lr=fast"])
    text = str(err.value) + str(err.value.__cause__ or "")
    assert "trainer.lr" in text and "fast" in text


def test_unknown_field_is_refused() -> None:
    with pytest.raises(Exception, match="loss.no_such_field"):
        compose(["loss.no_such_field=1"])


def test_code_targets_are_refused_anywhere() -> None:
    cfg = compose(["+loss._target_=os.system"])
    with pytest.raises(ConfigError, match="loss._target_"):
        reject_code_targets(cfg)


def test_unknown_component_fails_before_any_work() -> None:
    with pytest.raises(Exception, match="Could not find 'loss/nosuch'"):
        compose(["loss=nosuch"])


def test_bad_regime_and_flip_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="regime"):
        plan_run(compose(["regime=closed"]))
    with pytest.raises(ConfigError, match="features.flip"):
        plan_run(compose(["features.flip=both"]))
    with pytest.raises(ConfigError, match="regime=unrestricted_no_outside"):
        plan_run(compose(["regime=unrestricted_no_outside"]))


def test_min_images_per_identity_drops_identities_with_fewer_images():
    import numpy as np
    from omegaconf import OmegaConf

    from facebench.components import FaceData
    from facebench.run import _training_identities

    faces = FaceData(np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1), np.array([0, 0, 1, 2, 2, 2]), ["a", "b", "c"],
                     [f"k{i}" for i in range(6)])
    kept = faces.with_min_images(2)
    assert kept.names == ["a", "c"] and kept.labels.tolist() == [0, 0, 1, 1, 1]
    assert kept.images.ravel().tolist() == [0, 1, 3, 4, 5]
    assert faces.with_min_images(1) is faces
    with pytest.raises(ConfigError, match="trainer.min_images_per_identity=3 leaves 1"):
        _training_identities(faces, OmegaConf.create({"trainer": {"min_images_per_identity": 3}}), "fold1")
