"""The front door is pinned: adding or removing a public name is a deliberate change."""

import mlray

EXPECTED = {
    "AlreadyExists", "ArtifactRef", "ArtifactStore", "BackendUnavailable", "Caller", "Client",
    "ConfigError", "Conflict", "Experiment", "ExperimentsClient", "IntegrityError",
    "InvalidInput", "InvalidTransition", "MetricPoint", "MlrayError", "ModelSpec",
    "ModelVersion", "NotFound", "PermissionDenied", "PlatformConfig", "RegisteredModel",
    "RegistryClient", "Role", "Run", "RunPage", "RunStatus", "Stage", "StateStore",
    "Unauthenticated", "VersionSpec", "__version__", "connect", "load_config",
    "open_state_store", "PayloadTooLarge", "PredictionFailed", "RateLimited", "Rollout",
    "RolloutStatus", "ServingClient", "Strategy", "TrafficPolicy",
}


def test_exported_members_are_pinned() -> None:
    assert set(mlray.__all__) == EXPECTED
    for name in mlray.__all__:
        assert getattr(mlray, name) is not None


def test_public_names_have_docstrings() -> None:
    for name in mlray.__all__:
        obj = getattr(mlray, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_importing_mlray_does_not_import_ray() -> None:
    import subprocess
    import sys

    code = "import sys, mlray; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
