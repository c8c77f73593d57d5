"""The sample files in docs/samples import as documented, in dependency order."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargers.models import Charger
from chargers.resources import ChargerResource
from fleet_io.file_formats import read_dataset
from locations.resources import LocationResource
from vehicles.resources import VehicleModelResource

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parent.parent / "docs" / "samples"


@pytest.mark.parametrize("chargers_file", ["chargers.csv", "chargers.json"])
def test_the_sample_files_import_without_problems(chargers_file):
    steps = [
        (LocationResource, "locations.csv"),
        (VehicleModelResource, "vehicles.csv"),
        (ChargerResource, chargers_file),
    ]
    for resource, name in steps:
        path = SAMPLES / name
        result = resource().import_data(read_dataset(path.read_bytes(), path.suffix[1:]))
        assert not result.has_errors(), (name, [str(p) for p in result.problems()])
    hpc = Charger.objects.get(charge_point_id="HPC-01")
    assert hpc.evses.count() == 3
    assert hpc.configuration.get(key="NumberOfConnectors").value == "3"
