"""The parameter count computed from each model's architecture matches its published count."""

import pytest

from lpulab import catalog, workload


@pytest.mark.parametrize("model_id", catalog.model_ids())
def test_parameter_count_matches_published_within_1_percent(model_id):
    m = catalog.load_model(model_id)
    computed = workload.parameter_count(m)
    published = m.published_parameters.si
    assert abs(computed / published - 1) < 0.01, f"{model_id}: {computed:,} vs published {published:,.0f}"


@pytest.mark.parametrize("model_id", [i for i in catalog.model_ids() if "published_active" in catalog.load_model(i).values])
def test_active_parameter_count_matches_published(model_id):
    m = catalog.load_model(model_id)
    assert abs(workload.parameter_count(m, active=True) / m.values["published_active"].si - 1) < 0.01


def test_formula_by_hand_for_llama_2_70b():
    # L*(h*H*dh + 2*h*G*dh + H*dh*h + 3*h*F + 2*h) + 2*V*h + h
    L, h, H, G, dh, F, V = 80, 8192, 64, 8, 128, 28672, 32000
    expected = L * (h * H * dh + 2 * h * G * dh + H * dh * h + 3 * h * F + 2 * h) + 2 * V * h + h
    assert expected == 68_976_648_192
    assert workload.parameter_count(catalog.load_model("llama-2-70b")) == expected
