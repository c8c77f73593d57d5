# ImportJob moved to the fleet_io app (which keeps its table): only Django's idea of which
# app holds the model changes here; fleet_io.0001_initial takes it over.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('chargers', '0005_wide_csms_ids'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ImportJob')],
            database_operations=[],
        ),
    ]
