import json

import pytest

from world_model.files import atomic_write, write_json_atomic


@pytest.mark.parametrize("durable", [False, True])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, durable) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, {"week": 1}, durable=durable)

    def half(handle):
        handle.write(b'{"we')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half, durable=durable)
    assert json.loads(target.read_text()) == {"week": 1} and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    write_json_atomic(target, {"week": 2}, indent=1, durable=durable)
    assert target.read_text() == '{\n "week": 2\n}\n'
