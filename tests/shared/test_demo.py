import json

from shared.demo import CLASSES, make_sequences, run_demo


def test_sequence_classes_differ_only_in_order_for_rise_and_fall():
    x, y = make_sequences(200, seed=0)
    rise = x[y == 0, 0].mean(0)
    fall = x[y == 1, 0].mean(0)
    assert rise[-1] > rise[0] and fall[0] > fall[-1]


def test_demo_learns_the_held_out_set(tmp_path):
    report = run_demo(tmp_path, epochs=8, verbose=False)
    assert report["accuracy"] >= 0.9 and report["f1_macro"] >= 0.9
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["per_class"][0]["class"] == CLASSES[0]
    for name in ("history.csv", "history.json", "training_progress.png", "model.pt", "training_options.json"):
        assert (tmp_path / name).stat().st_size > 0
