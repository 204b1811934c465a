"""likelihood="auto": which heads compete, how the winner is picked, and that the choice is recorded."""

from __future__ import annotations

import numpy as np
import pytest

import vaexprs
from vaexprs.config import TrainConfig, auto_batch_size, auto_epochs
from vaexprs.errors import OptionError
from vaexprs.model import selection


def _counts(n_per_label: int = 40, genes: int = 150, seed: int = 0):
    """Overdispersed UMI-like counts, three labels with their own marker genes."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b", "c"], n_per_label)
    base = rng.gamma(0.6, 1.5, genes)
    mu = np.tile(base, (3, 1))
    for i in range(3):
        mu[i, i * 20 : (i + 1) * 20] *= 8.0
    codes = np.repeat(np.arange(3), n_per_label)
    lib = rng.lognormal(0.0, 0.3, (labels.size, 1))
    x = rng.poisson(rng.gamma(2.0, mu[codes] * lib / 2.0)).astype(np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(labels.size)])
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)]))


def test_candidates_follow_the_values():
    counts = np.array([[0, 3], [5, 1]], dtype=np.float32)
    heads, excluded = selection.candidate_heads(counts)
    assert heads == ["hurdle", "nb", "zinb", "bce"]
    heads, excluded = selection.candidate_heads(counts + 0.5)
    assert heads == ["hurdle", "bce"] and "integer counts" in excluded["nb"] and "zinb" in excluded
    heads, excluded = selection.candidate_heads(counts - 2)
    assert (
        heads == ["floor_hurdle", "mixture", "bce"] and "negative" in excluded["hurdle"]
    )  # signed values: tests/test_signed.py


def test_pick_prefers_realism_then_the_studys_order():
    rows = [
        {"likelihood": "bce", "auc": 0.60, "keep": 1.0, "zero_gap": -0.40},  # smooth: misses the zeros
        {"likelihood": "nb", "auc": 0.70, "keep": 0.70, "zero_gap": 0.0},  # loses the labels
        {"likelihood": "zinb", "auc": 0.66, "keep": 0.95, "zero_gap": 0.01},
        {"likelihood": "hurdle", "auc": 0.67, "keep": 0.95, "zero_gap": 0.02},
    ]
    for r in rows:
        r["score"] = selection.realism_score(r)
    assert rows[0]["score"] == pytest.approx(0.95) and rows[1]["score"] == pytest.approx(0.90)
    assert selection.pick(rows) == "hurdle"  # within 0.02 of zinb: the study's order decides
    rows[3]["score"] = 0.70
    assert selection.pick(rows) == "zinb"
    # chance is best: an AUC below 0.5 (generated cells that copy real ones) is as far from real as one above
    copies = {"likelihood": "hurdle", "auc": 0.30, "keep": 1.0, "zero_gap": 0.0}
    assert selection.realism_score(copies) == pytest.approx(selection.realism_score({**copies, "auc": 0.70}))
    assert selection.realism_score({**copies, "auc": 0.5}) == pytest.approx(0.5)
    # on zero-free values log_mixture must beat the hurdle clearly: where every head is told apart (array
    # intensities, AUC 1.0 each) the hurdle goes on to its tries, whose standardized input reaches those values
    tied = [{"likelihood": h, "score": 1.0} for h in ("hurdle", "log_mixture", "bce")]
    assert selection.pick(tied) == "hurdle"
    assert selection.pick([{**tied[0], "score": 0.70}, {**tied[1], "score": 0.69}]) == "hurdle"
    assert selection.pick([{**tied[0], "score": 0.85}, {**tied[1], "score": 0.68}, tied[2]]) == "log_mixture"


def test_keep_target_follows_real_cells_that_do_not_keep_their_labels():
    """Labels real cells keep apart: the target is 0.9. Labels they do not (a weak CRISPR screen: 0.44 of real
    cells kept), the real rate less 0.05: a candidate whose cells keep more than real cells is not rewarded over
    a more realistic one, and a candidate that loses the labels is still charged."""
    assert selection.keep_target(None) == selection.KEEP_MIN == selection.keep_target(0.99)
    assert selection.keep_target(0.44) == pytest.approx(0.39)
    realistic = {"likelihood": "hurdle", "auc": 0.55, "keep": 0.45, "zero_gap": 0.0}
    caricature = {"likelihood": "hurdle", "auc": 0.70, "keep": 0.80, "zero_gap": 0.0}
    # against a fixed 0.9 the caricature wins (0.80 against 1.00)
    assert selection.realism_score(caricature) < selection.realism_score(realistic)
    weak = {"keep_target": selection.keep_target(0.44)}
    assert selection.realism_score({**realistic, **weak}) == pytest.approx(0.55)
    assert selection.realism_score({**caricature, **weak}) == pytest.approx(0.70)
    assert selection.realism_score({**realistic, **weak, "keep": 0.20}) == pytest.approx(0.55 + 0.19)


def test_selection_rows_are_stratified_and_capped():
    labels = np.array(["big"] * 3000 + ["small"] * 4 + ["mid"] * 30)
    train, val = selection.selection_rows(labels.size, labels, seed=1)
    assert not set(train) & set(val)
    assert len(train) <= selection.MAX_TRAIN_CELLS and len(val) <= selection.MAX_VAL_CELLS
    assert (labels[train] == "small").sum() >= 2 and (labels[val] == "small").sum() == 0  # too small to hold out
    assert 1 <= (labels[val] == "mid").sum() <= 6  # 20% of 30, shrunk with the rest to the cap


def test_auto_sizes_bound_the_training():
    assert auto_epochs(90) == 300 and auto_epochs(2638) == 114 and auto_epochs(10**7) == 60
    assert auto_batch_size(999) == 32 and auto_batch_size(1000) == 128
    resolved = TrainConfig().resolved(2638)
    assert (resolved.epochs, resolved.batch_size) == (114, 128)
    assert TrainConfig(epochs="auto", batch_size=16).resolved(50) == TrainConfig(epochs=300, batch_size=16)


def test_selection_work_is_bounded_in_cell_epochs_times_genes():
    # the study's sets keep half the final epochs (pbmc3k: 596 training cells x 13,714 genes; yan: 73 x 20,214)
    assert selection.candidate_epochs(auto_epochs(2638), 596, 13714) == 57
    assert selection.candidate_epochs(300, 73, 20214) == 150 and selection.candidate_epochs(300, 560, 765) == 150
    # a mid-sized set with all genes no longer pays more for selection than pbmc3k (150 epochs before)
    cut = selection.candidate_epochs(auto_epochs(1000), 600, 13714)
    assert cut == 60 and cut * 600 * 13714 <= selection.SELECTION_WORK
    assert selection.candidate_epochs(300, 600, 10**6) == selection.MIN_CANDIDATE_EPOCHS  # the cut's floor
    # an explicit small epochs: candidates train as long as the final model, up to MIN_CANDIDATE_EPOCHS (at half
    # of 20, the sampled heads were untrained and bce won with cells told apart every time)
    assert selection.candidate_epochs(10, 600, 10**6) == 10 and selection.candidate_epochs(10, 60, 100) == 10
    assert selection.candidate_epochs(40, 60, 100) == selection.MIN_CANDIDATE_EPOCHS == 30
    assert selection.candidate_epochs(80, 60, 100) == 40  # from AUTO_EPOCHS_MIN up: half, as before


def test_auto_on_counts_trains_every_head_and_records_the_choice():
    data = _counts()
    result = vaexprs.fit_vae(data, "cell_type", epochs=30, hidden=(32,), seed=2)
    scored = [r for r in result.selection if "score" in r]
    heads = scored[:4]
    assert [r["candidate"] for r in heads] == ["hurdle", "nb", "zinb", "bce"]
    assert all(r["dropout"] == 0.0 and r["encoder_input"] == "head" and r["beta"] == 1.0 for r in heads)
    best_head = selection.pick(heads)
    first = next(r for r in heads if r["candidate"] == best_head)
    # dropout = auto: the winning head (sampled here: bce never wins on counts) tries again with dropout
    dropout_try, beta_try = scored[4:]
    assert dropout_try["candidate"] == f"{best_head}_dropout" and dropout_try["likelihood"] == best_head
    assert dropout_try["dropout"] == selection.CANDIDATE_DROPOUT and dropout_try["beta"] == 1.0
    winner = dropout_try if dropout_try["score"] < first["score"] - selection.TIE else first  # clearly better only
    # encoder_input = auto: standardized input is not tried on sparse counts (tests/test_encoder_input.py), but
    # the table says why
    not_tried = next(r for r in result.selection if r.get("candidate") == f"{winner['candidate']}_standardized")
    assert "exact zeros" in not_tried["skipped"]
    # beta = auto: then the winner so far with the heavier KL term, kept only when clearly more real as well
    assert beta_try["candidate"] == f"{winner['candidate']}_beta4" and beta_try["beta"] == selection.CANDIDATE_BETA
    assert (beta_try["likelihood"], beta_try["dropout"]) == (winner["likelihood"], winner["dropout"])
    if beta_try["score"] < winner["score"] - selection.TIE:
        winner = beta_try
    assert [r for r in scored if r["chosen"]] == [winner]
    assert winner["likelihood"] == result.model_config.likelihood == best_head
    assert winner["dropout"] == result.model_config.dropout
    assert winner["encoder_input"] == result.model_config.encoder_input
    assert winner["beta"] == result.train_config.beta  # the final model trains with the chosen KL weight
    for r in scored:
        assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["keep"] <= 1.0 and r["epochs"] == 30 and r["val_cells"] == 24
        assert r["keep_target"] == scored[0]["keep_target"] <= selection.KEEP_MIN  # one target for the table
        assert r["score"] == pytest.approx(selection.realism_score(r))
    assert next(r for r in result.selection if r["likelihood"] == "mse")["skipped"]
    # the choice survives a save/load round trip and generated values stay within the plausible maxima
    gen = vaexprs.gen_exprs(result, num_samples=200, seed=3)
    if result.value_cap is not None:
        space_max = gen.x_gen.max(axis=0)
        assert np.all(space_max <= result.value_cap + 1e-5)
    assert np.all(gen.x_gen >= 0)


def test_auto_never_trains_a_count_head_on_non_integers(small_sim):
    result = vaexprs.fit_vae(small_sim, "cell_type", epochs=4, hidden=(16,), seed=1)
    rows = {r.get("candidate", r["likelihood"]): r for r in result.selection}
    assert "score" not in rows["nb"] and "score" not in rows["zinb"] and "integer" in rows["nb"]["skipped"]
    chosen = next(r for r in rows.values() if r.get("chosen"))
    assert (
        result.model_config.likelihood in {"hurdle", "bce"} and result.model_config.likelihood == chosen["likelihood"]
    )
    assert result.model_config.dropout == chosen["dropout"]
    named = vaexprs.fit_vae(small_sim, "cell_type", likelihood="hurdle", epochs=2, hidden=(16,), seed=1)
    assert named.train_config.beta == 1.0  # a head the user named keeps VAExprs' KL weight


def test_beta_auto_is_left_to_the_selection_only_with_likelihood_auto():
    """beta = auto (the default): open while the likelihood is, VAExprs' 1 for a named head; a number stays."""
    assert TrainConfig().beta is None and TrainConfig(beta="auto").beta is None
    assert TrainConfig().with_beta_for("auto").beta is None
    assert TrainConfig().with_beta_for("bce").beta == 1.0 and TrainConfig(beta=2).with_beta_for("auto").beta == 2.0
    with pytest.raises(OptionError, match="beta"):
        TrainConfig(beta=-1)


def test_dropout_auto_is_decided_with_the_likelihood():
    """auto (the default) stays open while the likelihood is; an explicit likelihood means VAExprs' network."""
    from vaexprs.config import ModelConfig

    assert ModelConfig().dropout is None and ModelConfig(likelihood="hurdle").dropout == 0.0
    assert ModelConfig(likelihood="nb", dropout="auto").dropout == 0.0 and ModelConfig(dropout=0.3).dropout == 0.3
    with pytest.raises(OptionError, match="dropout"):
        ModelConfig(dropout=1.5)


def test_selection_with_a_fixed_dropout_and_beta_trains_no_second_try(monkeypatch):
    data = _counts(n_per_label=25, genes=60, seed=5)
    monkeypatch.setattr(selection, "MIN_CANDIDATE_EPOCHS", 1)
    monkeypatch.setattr(selection, "SELECTION_WORK", 60 * 60 * 2)  # 60 training cells x 60 genes x 2 epochs
    result = vaexprs.fit_vae(data, "cell_type", epochs=6, hidden=(16,), seed=1, dropout=0.1, beta=0.5)
    scored = [r for r in result.selection if "score" in r]
    names = [r["candidate"] for r in scored]
    assert names[:4] == ["hurdle", "nb", "zinb", "bce"] and not any(n.endswith("_dropout") for n in names)
    assert names[4:] == []  # no dropout or beta try; no standardized try either: these counts are sparse
    assert all(r["train_cells"] == 60 and r["epochs"] == 2 for r in scored)  # the work budget, not 6 / 2
    assert all(r["dropout"] == 0.1 for r in scored) and result.model_config.dropout == 0.1
    assert all(r["beta"] == 0.5 for r in scored) and result.train_config.beta == 0.5


def test_explicit_likelihood_skips_selection(small_sim):
    result = vaexprs.fit_vae(small_sim, "cell_type", epochs=2, hidden=(16,), likelihood="bce")
    assert result.selection == [] and result.model_config.likelihood == "bce"
    with pytest.raises(OptionError, match="likelihood"):
        vaexprs.fit_vae(small_sim, "cell_type", epochs=2, likelihood="nb")  # non-integers: refused, not rounded


def test_hurdle_values_are_capped_at_plausible_maxima():
    data = _counts(seed=4)
    result = vaexprs.fit_vae(data, "cell_type", epochs=5, hidden=(16,), likelihood="hurdle", seed=1)
    x = result.x_train.toarray() if hasattr(result.x_train, "toarray") else np.asarray(result.x_train)
    assert np.allclose(result.value_cap, x.max(axis=0) + x.std(axis=0), atol=1e-4)
    gen = vaexprs.gen_exprs(result, num_samples=2000, seed=1)
    assert np.all(gen.x_gen <= result.value_cap[None, :] + 1e-5) and gen.x_gen.min() >= 0
    counts = vaexprs.fit_vae(data, "cell_type", epochs=5, hidden=(16,), likelihood="nb", seed=1)
    assert np.all(counts.value_cap == np.floor(counts.value_cap))  # a whole count
    gen = vaexprs.gen_exprs(counts, num_samples=500, seed=1)
    assert np.all(gen.x_gen <= counts.value_cap[None, :]) and np.all(gen.x_gen == np.round(gen.x_gen))


def test_a_winning_beta_try_is_what_the_final_model_trains_with(monkeypatch, small_sim):
    """beta = auto: where the heavier KL term's cells are clearly more real on the held-out cells, the final model
    (on all cells) trains with it, and the table, the result and its config say so."""
    from vaexprs.model import fit

    real_fit_head = fit.fit_head
    trained = []

    def recording(subset, options, train, *args, **kwargs):
        trained.append((kwargs.get("what", "training"), options["likelihood"], train.beta))
        return real_fit_head(subset, options, train, *args, **kwargs)

    monkeypatch.setattr(fit, "fit_head", recording)
    real_score = selection.realism_score
    monkeypatch.setattr(selection, "realism_score", lambda row: 0.5 if row["beta"] == 4.0 else real_score(row))
    result = vaexprs.fit_vae(small_sim, "cell_type", epochs=4, hidden=(16,), seed=1, dropout=0.0)
    (chosen,) = [r for r in result.selection if r.get("chosen")]
    assert chosen["candidate"].endswith("_beta4") and chosen["beta"] == selection.CANDIDATE_BETA
    assert result.train_config.beta == 4.0 and result.model_config.likelihood == chosen["likelihood"]
    assert trained[-1] == ("training", chosen["likelihood"], 4.0)  # the final fit, on all cells
    assert all(beta == 1.0 for what, _, beta in trained[:-2])  # every candidate before the try: VAExprs' weight


def test_a_small_label_is_warned_about_once_not_once_per_candidate(caplog, small_sim):
    """Every candidate's latent sampler used to repeat the final model's warning (ten lines on yan)."""
    keep = np.flatnonzero(small_sim.obs["cell_type"].to_numpy() != "group3")
    keep = np.concatenate([keep, np.flatnonzero(small_sim.obs["cell_type"].to_numpy() == "group3")[:6]])
    data = small_sim[np.sort(keep)].copy()
    with caplog.at_level("WARNING", logger="vaexprs"):
        result = vaexprs.fit_vae(data, "cell_type", epochs=2, hidden=(16,), seed=1)
    assert sum(r.get("score") is not None for r in result.selection) >= 3  # candidates were trained
    small = [r.getMessage() for r in caplog.records if "its latent sampler is one Gaussian" in r.getMessage()]
    assert small == ["label 'group3' has 6 cells (< 10): its latent sampler is one Gaussian with a variance floor "
                     "of 0.01, not a BIC-selected mixture"]  # fmt: skip
