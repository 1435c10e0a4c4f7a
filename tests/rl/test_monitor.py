"""Alarms, batch statistics and TensorBoard tags of an RL run (rl/monitor.py)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.stage_configs import GRPOArgs
from rl.monitor import Alarms, generation_stats

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")


def fire(alarms: Alarms, logs: dict, step: int) -> list[str]:
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    before = len(alarms.fired)
    alarms.on_log(None, SimpleNamespace(global_step=step), control, logs=logs)
    return [a["alarm"] for a in alarms.fired[before:]], control


def test_each_alarm_fires_on_its_signature_and_not_on_a_healthy_step():
    cfg = GRPOArgs()
    healthy = {"rewards/rm_reward/mean": 0.60, "gen/dist2": 0.90, "gen/drift_rate": 0.0, "gen/stop_rate": 1.0,
               "kl": 0.02, "frac_reward_zero_std": 0.0}
    alarms = Alarms(cfg)
    assert fire(alarms, dict(healthy), 1)[0] == []
    assert fire(alarms, dict(healthy, **{"rewards/rm_reward/mean": 0.97}), 2)[0] == []     # RM up, Dist-2 fine
    # the seed's hack: RM up (0.60 -> 0.98) while the batch repeats itself
    names, _ = fire(alarms, dict(healthy, **{"rewards/rm_reward/mean": 0.98, "gen/dist2": 0.20}), 3)
    assert names == ["repetition"]
    assert fire(alarms, dict(healthy, **{"rewards/rm_reward/mean": 0.50, "gen/dist2": 0.20}), 4)[0] == []  # RM fell
    assert fire(alarms, dict(healthy, **{"gen/drift_rate": 0.125}), 5)[0] == ["script_drift"]
    assert fire(alarms, dict(healthy, **{"gen/stop_rate": 0.25}), 6)[0] == ["no_eos"]
    assert fire(alarms, dict(healthy, kl=3.0), 7)[0] == ["kl"]
    assert fire(alarms, dict(healthy, frac_reward_zero_std=1.0), 8)[0] == ["zero_std"]
    assert [a["step"] for a in alarms.fired] == [3, 5, 6, 7, 8]


def test_alarm_stop_asks_for_a_checkpoint_and_stops():
    alarms = Alarms(GRPOArgs(alarm_max_kl=0.1), stop=True)
    logs = {"kl": 0.5}
    names, control = fire(alarms, logs, 1)
    assert names == ["kl"] and control.should_save and control.should_training_stop and logs["alarms/kl"] == 1.0


def test_generation_stats_by_hand():
    s = generation_stats(["a b a b", "c d", "这就是生活！这就是生活！"], ["en", "en", "zh"], [True, True, False], GRPOArgs())
    # words: [a b a b] -> bigrams ab ba ab ; [c d] -> cd ; zh chars 这就是生活！这就是生活！ -> 11 bigrams, 6 distinct
    assert s["dist2"] == pytest.approx((2 + 1 + 6) / (3 + 1 + 11))
    assert s["stop_rate"] == pytest.approx(2 / 3) and s["mean_length"] == pytest.approx((4 + 2 + 12) / 3)
    assert s["repetition_rate"] == pytest.approx(1 / 3)  # only the Chinese line repeats 3-grams (> 0.2)


@pytest.mark.e2e
def test_hackable_setup_raises_the_repetition_alarm(tmp_path, monkeypatch, capsys):
    """RM-only reward on a tiny policy sampling at low temperature (a random LM then loops: low Dist-2), and a
    'reward model' that scores ever higher, as the seed's DeBERTa did while its policy repeated 这就是生活！ x40.
    (A random tiny policy does not learn to repeat within a test's budget, so the RM's rise is built in.)
    The repetition alarm must fire in the log, in summary.json and in TensorBoard, with every tag logged."""
    import reward.model
    from reward.train_rm import main as train_rm
    from rl.grpo import main as grpo
    from sft.sft import main as sft

    common = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "hack"]
    sft(common + ["--max_steps", "2"])
    train_rm(common + ["--max_steps", "2"])
    calls = []

    def rising_rm(self, texts, instructions=None, themes=None):
        calls.append(1)
        rising = 0.5 + 0.05 * len(calls)
        return [rising - 0.02 * (i % 2) for i in range(len(texts))]   # some spread in each group: GRPO learns
    monkeypatch.setattr(reward.model.HumorRewardModel, "score", rising_rm)
    summary = grpo(common + ["--max_steps", "4", "--langs", "[en]", "--temperature", "0.05", "--log_samples_steps", "2",
                             "--reward_weights", "{headline: {rm_reward: 1.0}, words: {rm_reward: 1.0}}"])
    fired = [a for a in summary["alarms"] if a["alarm"] == "repetition"]
    assert fired and fired[0]["step"] >= 2, summary["alarms"]             # not at step 1: the RM has not risen yet
    assert "repetition: RM score rose" in capsys.readouterr().out
    acc = EventAccumulator(str(tmp_path / "hack" / "grpo" / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/reward", "train/reward_std", "train/kl", "train/entropy", "train/completions/mean_length",
                "train/gen/stop_rate", "train/gen/dist1", "train/gen/dist2", "train/gen/drift_rate",
                "train/gen/repetition_rate", "train/rewards/rm_reward/mean", "train/alarms/repetition"):
        assert tag in tags, tag
    assert "samples/text_summary" in acc.Tags()["tensors"]


@pytest.mark.e2e
def test_gold_watch_logs_proxy_and_gold_keeps_the_best_adapter_and_alarms_on_a_scripted_history(run, tmp_path):
    from rl.grpo import main as grpo
    from rl.monitor import GoldWatch, over_optimised

    # the alarm on a scripted history: proxy up, gold down twice in a row
    history = [{"proxy": 0.50, "gold": 0.60}, {"proxy": 0.55, "gold": 0.58}, {"proxy": 0.61, "gold": 0.52}]
    assert over_optimised(history) and not over_optimised(history[:2])
    assert not over_optimised([dict(h, gold=0.6 + i / 10) for i, h in enumerate(history)])   # gold rising too

    class Alarms:
        fired = []

    class Model:
        saved = []

        def save_pretrained(self, d):
            Path(d).mkdir(parents=True)
            Model.saved.append(d)

    trainer = SimpleNamespace(model=Model())
    scripted = iter([(0.50, 0.60), (0.55, 0.58), (0.61, 0.52)])
    sample = lambda model: [dict(zip(("total", "gold"), next(scripted)))]
    watch = GoldWatch(lambda: trainer.model, sample, "gold", 1, None, tmp_path, Alarms)
    for step in (1, 2, 3):
        watch.on_step_end(None, SimpleNamespace(global_step=step), None)
    assert [a["alarm"] for a in Alarms.fired] == ["over_optimisation"] and len(Model.saved) == 1   # best = step 1

    # a real GRPO run with the watch on: gold/* in TensorBoard and best_gold/ beside final/
    run_dir, _ = run
    s = grpo(["--config", TINY, "--runs_dir", str(tmp_path), "--max_steps", "2", "--gold_reward_model", "length_reward",
              "--gold_eval_steps", "1", "--reward_weights", "{headline: {rm_reward: 1.0}, words: {coverage_reward: 1.0}}",
              "--sft_adapter", str(run_dir / "sft" / "final"), "--reward_model", str(run_dir / "rm" / "final")])
    stage = tmp_path / "tiny" / "grpo"
    acc = EventAccumulator(str(stage / "tb"))
    acc.Reload()
    assert {"gold/proxy", "gold/gold"} <= set(acc.Tags()["scalars"]) and len(acc.Scalars("gold/gold")) == 2
    assert (stage / "best_gold" / "adapter_config.json").is_file() and s["update_check"]["weights_moved"]
    assert [p["step"] for p in s["gold_watch"]] == [1, 2]


@pytest.mark.e2e
def test_ppo_watches_a_gold_reward_model_given_as_a_directory(run, tmp_path):
    """PPO's own loop runs the same watch; the gold is a trained RM directory (here the classifier, read through
    load_scorer), scored on held-out samples; a weighted component or a missing path is refused as gold."""
    from common.stage_configs import GRPOArgs
    from reward.composite import build_gold
    from reward.model import HumorRewardModel
    from rl.ppo import main as ppo

    run_dir, _ = run
    rm_dir = run_dir / "rm" / "final"
    s = ppo(["--config", TINY, "--runs_dir", str(tmp_path), "--max_steps", "2", "--batch_size", "4",
             "--minibatch_size", "2", "--gold_reward_model", str(rm_dir), "--gold_eval_steps", "1",
             "--reward_weights", "{headline: {length_reward: 1.0}, words: {coverage_reward: 1.0}}",
             "--sft_adapter", str(run_dir / "sft" / "final"), "--reward_model", str(rm_dir)])
    stage = tmp_path / "tiny" / "ppo"
    acc = EventAccumulator(str(stage / "tb"))
    acc.Reload()
    assert len(acc.Scalars("gold/gold")) == 2 and (stage / "best_gold" / "adapter_config.json").is_file()
    assert [p["step"] for p in s["gold_watch"]] == [1, 2] and all(0.0 <= p["gold"] <= 1.0 for p in s["gold_watch"])
    gold = build_gold(GRPOArgs(gold_reward_model=str(rm_dir)))
    texts = ["I told my cactus a secret.", "The council approved the budget."]
    assert gold(texts) == pytest.approx(HumorRewardModel(rm_dir).score(texts), abs=1e-6)
    with pytest.raises(ValueError, match="weighted in the training reward"):
        build_gold(GRPOArgs(gold_reward_model="length_reward",
                            reward_weights={"headline": {"length_reward": 1.0}, "words": {"coverage_reward": 1.0}}))
    with pytest.raises(ValueError, match="neither a reward component"):
        build_gold(GRPOArgs(gold_reward_model=str(tmp_path / "nowhere")))
