"""The tutorial examples under examples/ run and their numbers carry their lesson.

Each test runs an example's ``main`` into a temporary directory and checks the numbers it returns and
writes, with margins measured over several seeds (never a wall-clock time), and that its pictures exist.
"""

import math

import pytest
from example_runner import assert_pictures, run_example


@pytest.mark.slow
def test_forward_process_closed_form_equals_chain(tmp_path):
    n = run_example("forward_process", tmp_path)
    for name, res in n["moments"].items():
        # every moment of both ways of drawing x_t within the sample-size tolerance of eq. 4 and of each other
        assert res["max_abs_z"] < res["z_tol"], name
        assert 0.75 < res["rms_z"] < 1.25, name  # the differences are sampling noise, neither more nor less
        for row in res["steps"]:
            assert math.isclose(row["variance_theory"], 1 - row["alpha_bar"])
            tol = 5 * math.sqrt(2 / res["n_draws"]) * row["variance_theory"] / math.sqrt(res["dims"])
            for how in ("closed", "chain"):
                assert abs(row[f"variance_{how}"] - row["variance_theory"]) < tol, (name, row["t"], how)
    assert n["moments"]["mnist"]["dims"] == 784
    s = n["schedules"]
    assert all(v["alpha_bar_T"] < 1e-2 for v in s.values())  # at T = 1000 every schedule reaches noise
    assert s["cosine"]["alpha_bar_T"] < s["linear"]["alpha_bar_T"]
    # the linear schedule destroys the signal soonest; the cosine keeps it longest (Nichol & Dhariwal's point)
    half = {k: v["half_signal_t"] for k, v in s.items()}
    assert half["linear"] == min(half.values()) and half["cosine"] == max(half.values())
    assert_pictures(tmp_path, "forward_swissroll.png", "moments.png", "schedules_alpha_bar.png", "schedules_digit.png")


def test_normal_model_learns_the_sample_mean(tmp_path):
    n = run_example("normal_model", tmp_path)
    se = max(n["standard_error_of_mean"])
    for name in ("white", "full"):
        m = n[name]
        assert m["mean_minus_sample_mean"] < 1e-9, name  # SGD on the NLL finds the closed-form MLE ...
        assert m["mean_minus_true_mean"] < 4.5 * se, name  # ... which is the true mean up to sampling error
        assert m["loss_last"] == pytest.approx(m["loss_at_mle"], abs=1e-10)
        assert m["loss_last"] < m["loss_first"]
    assert n["full"]["cov_minus_sample_cov"] < 1e-8  # and the covariance MLE (dividing by N)
    assert n["white"]["learned_cov"] == [[1.0, 0.0], [0.0, 1.0]]
    assert n["full"]["loss_at_mle"] < n["white"]["loss_at_mle"]  # the richer family fits better
    assert_pictures(tmp_path, "samples.png", "loss.png")


@pytest.mark.slow
def test_langevin_exact_and_learned_scores(tmp_path):
    n = run_example("langevin", tmp_path)
    sets = n["sets"]

    def ratio(name, metric):
        return sets[name][metric]["ratio"]

    for name in ("exact score, plain, from N(0, I)", "exact score, annealed, from the square"):
        assert ratio(name, "sliced_wasserstein") < 1.6 and ratio(name, "mmd_rbf") < 2.2, name  # near the floor
    # from the square, plain Langevin keeps the start's mode shares (0.146 diagonal, 0.104 axis) ...
    assert sets["exact score, plain, from the square"]["diagonal_minus_axis"] > 0.025
    assert ratio("exact score, plain, from the square", "mmd_rbf") > ratio("exact score, annealed, from the square", "mmd_rbf")
    # ... annealing over decreasing t evens them out
    assert abs(sets["exact score, annealed, from the square"]["diagonal_minus_axis"]) < 0.02
    # the learned score: reasonably close to the data too
    assert ratio("learned score, plain, from N(0, I)", "sliced_wasserstein") < 2.0
    assert ratio("learned score, plain, from N(0, I)", "mmd_rbf") < 3.5
    assert ratio("learned score, annealed, from the square", "sliced_wasserstein") < 2.5
    assert ratio("learned score, annealed, from the square", "mmd_rbf") < 6.0
    assert ratio("learned eps, DDPM ancestral sampler", "sliced_wasserstein") < 2.0
    for name, row in sets.items():
        assert min(row["mode_shares"]) > 0.05, name  # no mode lost
    assert_pictures(tmp_path, "samples.png")


@pytest.mark.slow
def test_swissroll_tutorial_settings_end_far_from_noise(tmp_path):
    n = run_example("swissroll_tutorial", tmp_path)
    tutorial, preset = n["settings"]["tutorial"], n["settings"]["preset"]
    assert (tutorial["T"], preset["T"]) == (50, 200)
    assert tutorial["alpha_bar_T"] == pytest.approx(0.603, abs=0.002)
    assert preset["alpha_bar_T"] < 1e-4
    assert any("alpha-bar_T=0.603" in w for w in tutorial["warnings"]) and not preset["warnings"]
    assert tutorial["prior_kl_bits_per_dim"] > 0.3 and preset["prior_kl_bits_per_dim"] < 1e-3  # L_T (eq. 5)
    s = n["samples"]
    for metric in ("sliced_wasserstein", "mmd_rbf", "wasserstein2"):
        wrong_start = s["tutorial, from N(0, I)"][metric]["ratio"]
        # the same network started where its chain really ends does clearly better ...
        assert s["tutorial, from q(x_T)"][metric]["ratio"] * 1.2 < wrong_start, metric
        # ... and the preset, whose chain ends at noise, beats the tutorial's settings
        assert s["preset, from N(0, I)"][metric]["ratio"] < wrong_start, metric
    assert s["preset, from N(0, I)"]["sliced_wasserstein"]["ratio"] < 2.0
    assert_pictures(tmp_path, "start_vs_end.png", "samples.png")
