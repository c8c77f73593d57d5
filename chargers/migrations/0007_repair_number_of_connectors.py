"""NumberOfConnectors equals the number of EVSEs: the `--demo` fleet stored 1 for its
2-connector chargers (the key was seeded before the EVSEs existed). Repairs every row."""

from django.db import migrations
from django.db.models import Count


def repair_number_of_connectors(apps, schema_editor):
    Charger = apps.get_model("chargers", "Charger")
    ConfigurationKey = apps.get_model("chargers", "ConfigurationKey")
    counts = dict(Charger.objects.annotate(n=Count("evses")).values_list("pk", "n"))
    wrong = [
        row
        for row in ConfigurationKey.objects.filter(key="NumberOfConnectors")
        if row.value != str(counts.get(row.charger_id) or 1)
    ]
    for row in wrong:
        row.value = str(counts.get(row.charger_id) or 1)
    ConfigurationKey.objects.bulk_update(wrong, ["value"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("chargers", "0006_importjob_to_fleet_io")]

    operations = [migrations.RunPython(repair_number_of_connectors, migrations.RunPython.noop)]
