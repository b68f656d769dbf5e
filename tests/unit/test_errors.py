import pickle

import pytest

import mlray.errors as errors
from mlray.errors import MlrayError

ALL = [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize("cls", ALL)
def test_every_error_pickles_with_its_field(cls: type[MlrayError]) -> None:
    err = cls("something is wrong", field="spec.name")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.message == "something is wrong"
    assert back.field == "spec.name"
    assert back.to_dict() == {"error": "something is wrong", "code": cls.code,
                              "field": "spec.name"}


def test_user_errors_exit_2_and_platform_errors_exit_1() -> None:
    assert errors.NotFound.exit_code == 2
    assert errors.InvalidInput.exit_code == 2
    assert errors.BackendUnavailable.exit_code == 1
    assert {c.http_status for c in (errors.NotFound, errors.Conflict, errors.InvalidInput)} == {
        404, 409, 400}
