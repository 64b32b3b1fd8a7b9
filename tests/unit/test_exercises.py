"""Every exercise check passes the model solution and fails each listed mistake with its own hint.

Each mistake is written as the small buggy function a student would write (the solution with one
thing wrong); the check must name that mistake (`Feedback.mistake`) and show its hint.
"""

import numpy as np
import pytest
import torch

from effdepth import exercises as ex
from effdepth.exercises import contribution, depthscore, erasure_entry, lens_layer, linear_map, skip
from effdepth.exercises import solutions as so
from effdepth.exercises._check import Case, judge


def assert_mistake(feedback, key, hints):
    assert not feedback.passed, feedback
    assert feedback.mistake == key, feedback
    assert hints[key] in feedback.message, feedback


def norm(x):
    return x.norm(dim=-1).clamp_min(1e-6)


# -- the machinery -------------------------------------------------------------------------------


def test_judge_passes_close_fails_far_and_names_unknown_errors_generically():
    cases = [Case("x", (1.0,), {"v": np.asarray(2.0)}, {"doubled": {"v": np.asarray(4.0)}})]
    hints = {"doubled": "you doubled it"}
    assert judge("t", lambda x: 2.0 * x * (1 + 1e-5), cases, hints, ("v",)).passed
    fb = judge("t", lambda x: 4.0 * x, cases, hints, ("v",))
    assert (fb.passed, fb.mistake, fb.message.endswith("you doubled it")) == (False, "doubled", True)
    fb = judge("t", lambda x: 7.0, cases, hints, ("v",))
    assert not fb.passed and fb.mistake is None and "matches none of the common mistakes" in fb.message


def test_judge_reports_not_implemented_errors_and_formats():
    cases = [Case("x", (1.0,), {"a": np.asarray(1.0), "b": np.asarray(2.0)})]

    def todo(x):
        raise NotImplementedError

    assert judge("t", todo, cases, {}, ("a", "b")).mistake == "not_implemented"
    fb = judge("t", lambda x: 1 / 0, cases, {}, ("a", "b"))
    assert fb.mistake == "error" and "ZeroDivisionError" in fb.message
    assert judge("t", lambda x: {"a": 1.0}, cases, {}, ("a", "b")).mistake == "format"
    assert judge("t", lambda x: (1.0, 2.0), cases, {}, ("a", "b")).passed
    assert judge("t", lambda x: (np.ones(3), 2.0), cases, {}, ("a", "b")).mistake == "shape"


def test_a_student_editing_the_inputs_in_place_does_not_change_the_next_case():
    arr = np.zeros(3)
    cases = [Case("x", (arr,), {"v": np.asarray(0.0)}), Case("y", (arr,), {"v": np.asarray(0.0)})]

    def vandal(a):
        out = a.sum()
        a += 1
        return out

    assert judge("t", vandal, cases, {}, ("v",)).passed and arr.sum() == 0


def test_a_value_instead_of_a_function_is_named_as_such():
    """issue 25 (partial): a check given the function's result, not the function."""
    for check in (ex.check_skip_row, ex.check_linear_map, ex.check_depth_score):
        fb = check(np.zeros(3))
        assert fb.mistake == "not_a_function" and "without parentheses" in fb.message and "ndarray" in fb.message, fb


def test_a_function_that_never_returns_is_stopped_by_the_time_limit():
    """issue 25 (partial): no hang; a student's `except Exception` cannot swallow the stop."""
    import time

    cases = [Case("x", (1.0,), {"v": np.asarray(1.0)})]

    def endless(x):
        while True:
            try:
                time.sleep(0.05)
            except Exception:
                pass

    t0 = time.time()
    fb = judge("t", endless, cases, {}, ("v",), limit=0.5)
    assert fb.mistake == "time_limit" and "did not return within 0.5 s" in fb.message and time.time() - t0 < 5
    assert judge("t", lambda x: 1.0, cases, {}, ("v",), limit=0.5).passed  # the alarm is off again


def test_an_error_is_blamed_on_the_students_line_not_on_library_code():
    cases = [Case("x", (1.0,), {"v": np.asarray(1.0)})]

    def inverse(x):
        return np.linalg.inv(np.ones((2, 3)))

    fb = judge("t", inverse, cases, {}, ("v",))
    assert fb.mistake == "error" and "np.linalg.inv(np.ones((2, 3)))" in fb.message, fb


def test_what_an_attempt_did_to_the_model_never_reaches_another_check():
    """issue 25 #5: a student function that scales the tiny model's weights, or registers a hook and
    raises before removing it, must not make the model solution fail afterwards, nor damage the
    references a later check builds (also when the notebook's own ex.tiny() was damaged first)."""
    from effdepth.exercises import _check

    def scales(model, prompt, layer):
        for p in model.hf.parameters():
            p.mul_(3.0)
        return so.relative_contribution(model, prompt, layer)

    def leaves_a_hook(model, prompt, *rest):
        for block in model.layers():
            block.register_forward_hook(lambda mod, args, out: out[0] * 0 if isinstance(out, tuple) else out * 0)
        raise RuntimeError("forgot to remove the hook")

    assert not ex.check_relative_contribution(scales).passed
    assert ex.check_relative_contribution(leaves_a_hook).mistake == "error"
    assert ex.check_relative_contribution(so.relative_contribution).passed
    assert ex.check_skip_row(leaves_a_hook).mistake == "error"
    assert ex.check_skip_row(so.skip_row).passed
    notebook_model = ex.tiny()
    try:  # the notebook's model damaged before a check builds its references
        with torch.no_grad():
            for p in notebook_model.hf.parameters():
                p.mul_(0.5)
        _check._CASES.clear()
        assert (
            ex.check_lens_layer(so.lens_layer).passed
            and ex.check_relative_contribution(so.relative_contribution).passed
        )
    finally:
        ex.tiny.cache_clear()


# -- (a) relative contribution --------------------------------------------------------------------


def _hma(model, prompt, layer):
    """(h, a, m) of one layer, float32 [T, d], with the hooks of the solution."""
    block, attn, mlp = ex.block_parts(model, layer)
    seen = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda mod, args, kwargs: seen.update(h=(args[0] if args else kwargs["hidden_states"])[0]), with_kwargs=True
        ),
        attn.register_forward_hook(lambda mod, args, out: seen.update(a=out[0][0])),
        mlp.register_forward_hook(lambda mod, args, out: seen.update(m=out[0])),
    ]
    with torch.no_grad():
        model.hf(input_ids=model.encode(prompt)[None], use_cache=False)
    for hk in hooks:
        hk.remove()
    return seen["h"].float(), seen["a"].float(), seen["m"].float()


def _contrib(h, a, m, mlp_res, layer_den, agg=torch.mean, cos_with=None):
    d = a + m
    c = h if cos_with is None else cos_with
    return {
        "rel_attn": agg(norm(a) / norm(h)).item(),
        "rel_mlp": agg(norm(m) / norm(mlp_res)).item(),
        "rel_layer": agg(norm(d) / norm(layer_den)).item(),
        "cos_layer": ((d * c).sum(-1) / (norm(d) * norm(c))).mean().item(),
    }


def rc_denominator_output(model, prompt, layer):
    h, a, m = _hma(model, prompt, layer)
    out = _contrib(h, a, m, h + a + m, h + a + m, cos_with=h + a + m)
    out["rel_attn"] = (norm(a) / norm(h + a)).mean().item()
    return out


def rc_mlp_over_h(model, prompt, layer):
    h, a, m = _hma(model, prompt, layer)
    return _contrib(h, a, m, h, h)


def rc_ratio_of_means(model, prompt, layer):
    h, a, m = _hma(model, prompt, layer)
    out = _contrib(h, a, m, h + a, h)
    out["rel_layer"] = (norm(a + m).mean() / norm(h).mean()).item()
    return out


def rc_max(model, prompt, layer):
    h, a, m = _hma(model, prompt, layer)
    return _contrib(h, a, m, h + a, h, agg=torch.max)


def rc_no_position_0(model, prompt, layer):
    h, a, m = (x[1:] for x in _hma(model, prompt, layer))
    return _contrib(h, a, m, h + a, h)


def rc_squared(model, prompt, layer):
    h, a, m = _hma(model, prompt, layer)
    return {
        "rel_attn": ((a * a).sum(-1) / (h * h).sum(-1)).mean().item(),
        "rel_mlp": ((m * m).sum(-1) / ((h + a) ** 2).sum(-1)).mean().item(),
        "rel_layer": (((a + m) ** 2).sum(-1) / (h * h).sum(-1)).mean().item(),
        "cos_layer": _contrib(h, a, m, h + a, h)["cos_layer"],
    }


def rc_next_layer(model, prompt, layer):
    return so.relative_contribution(model, prompt, layer + 1)


def rc_cos_with_attention(model, prompt, layer):
    h, a, m = _hma(model, prompt, layer)
    out = _contrib(h, a, m, h + a, h)
    out["cos_layer"] = ((a * h).sum(-1) / (norm(a) * norm(h))).mean().item()
    return out


@pytest.mark.parametrize(
    "buggy, key",
    [
        (rc_denominator_output, "denominator_output"),
        (rc_mlp_over_h, "mlp_denominator_input"),
        (rc_ratio_of_means, "ratio_of_means"),
        (rc_max, "max_not_mean"),
        (rc_no_position_0, "position_0_left_out"),
        (rc_squared, "squared"),
        (rc_next_layer, "off_by_one_layer"),
        (rc_cos_with_attention, "cos_wrong_pair"),
    ],
)
def test_relative_contribution_check_names_each_mistake(buggy, key):
    assert_mistake(ex.check_relative_contribution(buggy), key, contribution.HINTS)


def test_relative_contribution_check_passes_the_solution_and_agrees_with_the_package():
    assert ex.check_relative_contribution(so.relative_contribution).passed


# -- (b) skipping -------------------------------------------------------------------------------


def _skip(model, prompt, s, t, positions, agg="max", denom="clean", meas_from=None, zero=False, writes=True):
    ids = model.encode(prompt)
    h = so.residuals(model, ids)
    if zero:  # h̄_{s+1} := 0 at the positions
        blocks = model.layers()

        def to_zero(mod, args, out):
            o = (out[0] if isinstance(out, tuple) else out).clone()
            o[:, positions] = 0
            return (o,) + tuple(out[1:]) if isinstance(out, tuple) else o

        hk = blocks[s].register_forward_hook(to_zero)
        h_bar = so.residuals(model, ids)
        hk.remove()
    else:
        h_bar = so.residuals(model, ids, skip=(s, positions))
    if writes:
        d, db = h[1:] - h[:-1], h_bar[1:] - h_bar[:-1]
    else:
        d, db = h[1:], h_bar[1:]
    r = (db - d).norm(dim=-1) / (d if denom == "clean" else db).norm(dim=-1).clamp_min(1e-6)
    r = r[:, (t if meas_from is None else meas_from) :]
    return (r.amax(-1) if agg == "max" else r.mean(-1)).numpy()


@pytest.mark.parametrize(
    "buggy, key",
    [
        (lambda m, p, s, t: _skip(m, p, s, t, torch.arange(0, t)), "position_0"),
        (lambda m, p, s, t: _skip(m, p, s, t, torch.arange(1, t), agg="mean"), "mean_not_max"),
        (lambda m, p, s, t: _skip(m, p, s, t, torch.arange(1, t), denom="intervened"), "denominator_intervened"),
        (lambda m, p, s, t: _skip(m, p, s, t, torch.arange(1, t), meas_from=0), "measured_everywhere"),
        (lambda m, p, s, t: _skip(m, p, s, t, torch.arange(1, t), zero=True), "zeroed_residual"),
        (lambda m, p, s, t: _skip(m, p, s, t, torch.arange(1, t), writes=False), "residuals_not_writes"),
        (lambda m, p, s, t: _skip(m, p, s, t, torch.arange(1, t + 1), meas_from=t + 1), "wrong_split"),
    ],
    ids=[
        "position_0",
        "mean_not_max",
        "denominator_intervened",
        "measured_everywhere",
        "zeroed_residual",
        "residuals_not_writes",
        "wrong_split",
    ],
)
def test_skip_check_names_each_mistake(buggy, key):
    assert_mistake(ex.check_skip_row(buggy), key, skip.HINTS)


def test_skip_check_passes_the_solution():
    assert ex.check_skip_row(so.skip_row).passed


# -- (c) logit lens -----------------------------------------------------------------------------


def _lens(model, prompt, b, reverse=False, norm_first=True, output=False, divide=True, first=0, base2=False, k=5):
    ids = model.encode(prompt)
    with torch.no_grad():
        h = so.residuals(model, ids)[b + 1 if output else b]
        logits_f = model.hf(input_ids=ids[None], use_cache=False).logits[0].float()
        logits_b = ex.unembedding(model)(ex.final_norm(model)(h) if norm_first else h).float()
    lp, lq = torch.log_softmax(logits_b, -1)[first:], torch.log_softmax(logits_f, -1)[first:]
    p, q = (lq, lp) if reverse else (lp, lq)
    kl = (p.exp() * (p - q)).sum(-1) / (np.log(2) if base2 else 1)
    tb, tf = lp.topk(k, -1).indices, lq.topk(k, -1).indices
    ov = (tb[:, :, None] == tf[:, None, :]).any(-1).sum(-1).float() / (k if divide else 1)
    return {"kl": kl.mean().item(), "overlap": ov.mean().item()}


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"reverse": True}, "kl_reversed"),
        ({"norm_first": False}, "no_final_norm"),
        ({"output": True}, "block_output"),
        ({"divide": False}, "overlap_count"),
        ({"first": 1}, "position_0_left_out"),
        ({"base2": True}, "log_base_2"),
    ],
)
def test_lens_check_names_each_mistake(kw, key):
    assert_mistake(ex.check_lens_layer(lambda m, p, b: _lens(m, p, b, **kw)), key, lens_layer.HINTS)


def test_lens_check_passes_the_solution_and_the_helper_agrees_with_it():
    assert ex.check_lens_layer(so.lens_layer).passed
    assert ex.check_lens_layer(_lens).passed  # the buggy functions' base is right when no bug is switched on


# -- (d) depth score ----------------------------------------------------------------------------


def ds_mean(E, o):
    return so.depth_score(E.mean(0, keepdims=True), o.mean(0, keepdims=True))


def ds_swapped(E, o):
    E, o = E.mean(0), o.mean(0)
    L = E.shape[-1]
    e = np.where(np.triu(np.ones((L, L), bool), 1), E, 0).max(-1)
    s = np.arange(L)
    return {"layer": (s * e).sum() / e.sum(), "logit": (s * o).sum() / o.sum()}


def _ds(E, o, k=1, denom=lambda L: np.maximum(L - 1 - np.arange(L), 1), offset=0, normalise=True):
    E, o = E.max(0), o.max(0)
    L = E.shape[-1]
    e = np.where(np.triu(np.ones((L, L), bool), k), E, 0).sum(-1) / denom(L)
    s = np.arange(L) + offset
    return {
        "layer": (s * e).sum() / (e.sum() if normalise else 1),
        "logit": (s * o).sum() / (o.sum() if normalise else 1),
    }


@pytest.mark.parametrize(
    "buggy, key",
    [
        (ds_mean, "mean_over_examples"),
        (ds_swapped, "max_and_mean_swapped"),
        (lambda E, o: _ds(E, o, k=0), "diagonal_included"),
        (lambda E, o: _ds(E, o, denom=lambda L: L), "divided_by_L"),
        (lambda E, o: _ds(E, o, denom=lambda L: L - np.arange(L)), "divided_by_L_minus_s"),
        (lambda E, o: _ds(E, o, offset=1), "one_indexed"),
        (lambda E, o: _ds(E, o, normalise=False), "not_normalised"),
    ],
    ids=["mean", "swapped", "diagonal", "by_L", "by_L_minus_s", "one_indexed", "unnormalised"],
)
def test_depth_score_check_names_each_mistake(buggy, key):
    assert_mistake(ex.check_depth_score(buggy), key, depthscore.HINTS)


def test_depth_score_check_passes_the_solution_and_the_reference_is_the_package():
    assert ex.check_depth_score(so.depth_score).passed and ex.check_depth_score(_ds).passed
    from effdepth.measures.depth_score import depth_scores

    E, o = depthscore.example_effects()
    ref = so.depth_score(E, o)
    assert np.allclose(depth_scores(E.max(0), o.max(0)), (ref["layer"], ref["logit"]))


# -- (e) residual erasure -----------------------------------------------------------------------


def _erase(
    model, prompt, answer, vectors, b, t, scored_from=-1, agg="max", what="probs", where=None, span=False, zero=False
):
    from effdepth.measures.residual_erasure import encode_example

    ids, start = encode_example(model, prompt, answer)
    i = b if where is None else where
    module = model.layers()[i] if i < model.n_layers else ex.final_norm(model)

    def erase(mod, args, kwargs):
        h = (args[0] if args else kwargs["hidden_states"]).clone()
        v = torch.zeros_like(h[0, t]) if zero else vectors[b].to(h.dtype)
        if span:
            h[:, t:] = v
        h[:, t] = v
        return ((h,) + tuple(args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    with torch.no_grad():
        y = model.hf(input_ids=ids[None], use_cache=False).logits[0].float()
        hk = module.register_forward_pre_hook(erase, with_kwargs=True)
        y_bar = model.hf(input_ids=ids[None], use_cache=False).logits[0].float()
        hk.remove()
    pos = torch.arange(start + scored_from, len(ids) + scored_from)
    if what == "probs":
        diff = (torch.softmax(y_bar[pos], -1) - torch.softmax(y[pos], -1)).norm(dim=-1)
    elif what == "logits":
        diff = (y_bar[pos] - y[pos]).norm(dim=-1)
    else:
        lp, lq = torch.log_softmax(y_bar[pos], -1), torch.log_softmax(y[pos], -1)
        diff = (lp.exp() * (lp - lq)).sum(-1)
    return (diff.max() if agg == "max" else diff.mean()).item()


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"scored_from": 0}, "scored_answer_positions"),
        ({"agg": "mean"}, "mean_not_max"),
        ({"what": "logits"}, "logits_not_probabilities"),
        ({"what": "kl"}, "kl_not_l2"),
        ({"span": True}, "from_t_onwards"),
        ({"zero": True}, "zero_vector"),
    ],
)
def test_erasure_check_names_each_mistake(kw, key):
    assert_mistake(ex.check_erasure_entry(lambda *a: _erase(*a, **kw)), key, erasure_entry.HINTS)


def test_erasure_check_names_the_block_output_mistake():
    def block_output(model, prompt, answer, vectors, b, t):  # erases h_{b+1}: wrong for every b < L
        return _erase(model, prompt, answer, vectors, b, t, where=b + 1)

    assert_mistake(ex.check_erasure_entry(block_output), "block_output", erasure_entry.HINTS)


def test_erasure_check_passes_the_solution():
    assert ex.check_erasure_entry(so.erasure_entry).passed and ex.check_erasure_entry(_erase).passed


# -- (f) linear map -----------------------------------------------------------------------------


def lm_no_bias(X, Y):
    return torch.linalg.lstsq(X, Y, driver="gelsd").solution, torch.zeros(Y.shape[1], dtype=torch.float64)


def lm_bias_uncentred(X, Y):
    W = torch.linalg.lstsq(X, Y, driver="gelsd").solution
    return W, Y.mean(0) - X.mean(0) @ W


def lm_transposed(X, Y):
    W, b = so.linear_map(X, Y)
    return W.T, b


def lm_reversed(X, Y):  # fits the source from the target
    W, b = so.linear_map(Y, X)
    return W, b


@pytest.mark.parametrize(
    "buggy, key",
    [
        (lm_no_bias, "no_bias"),
        (lm_bias_uncentred, "bias_without_centring"),
        (lm_transposed, "transposed"),
        (lm_reversed, "transposed"),
    ],
)
def test_linear_map_check_names_each_mistake(buggy, key):
    assert_mistake(ex.check_linear_map(buggy), key, linear_map.HINTS)


def test_linear_map_check_passes_the_solution_and_a_ones_column_solution():
    assert ex.check_linear_map(so.linear_map).passed

    def with_ones(X, Y):
        Xa = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
        Wa = torch.linalg.lstsq(Xa, Y, driver="gelsd").solution
        return Wa[:-1], Wa[-1]

    assert ex.check_linear_map(with_ones).passed


def test_show_solution_renders_the_source_collapsed():
    html = ex.show_solution(so.linear_map).data
    assert html.startswith("<details") and "lstsq" in html and "</details>" in html


def test_explore_draws_the_static_picture_or_a_slider_that_redraws():
    drawn = []

    def draw(b=0):
        drawn.append(b)

    ex.explore(draw, False, value=2, maximum=4, description="b")
    assert drawn == [2]  # a static page: the one picture
    pytest.importorskip("ipywidgets")
    ex.explore(draw, True, value=3, maximum=4, description="b")
    assert drawn == [2, 3]  # the slider draws its first value (and redraws on every move)
