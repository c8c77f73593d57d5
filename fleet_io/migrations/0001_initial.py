# ImportJob, moved here from the chargers app: the table `chargers_importjob` stays as it is
# (db_table), so no row moves; the content type (and so the permissions given on it)
# follows the model.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def move_content_type(apps, schema_editor, old='chargers', new='fleet_io'):
    ContentType = apps.get_model('contenttypes', 'ContentType')
    types = ContentType.objects.using(schema_editor.connection.alias)
    if not types.filter(app_label=new, model='importjob').exists():
        types.filter(app_label=old, model='importjob').update(app_label=new)


def move_content_type_back(apps, schema_editor):
    move_content_type(apps, schema_editor, old='fleet_io', new='chargers')


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('chargers', '0006_importjob_to_fleet_io'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ImportJob',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('resource', models.CharField(max_length=20)),
                        ('file_name', models.CharField(max_length=255)),
                        ('file_format', models.CharField(max_length=10)),
                        ('data', models.BinaryField()),
                        ('dry_run', models.BooleanField(default=False, help_text='Check the file and count what would change; write nothing.')),
                        ('status', models.CharField(choices=[('queued', 'queued'), ('running', 'running'), ('done', 'done'), ('failed', 'failed')], default='queued', max_length=10)),
                        ('total_rows', models.PositiveIntegerField(default=0)),
                        ('created_count', models.PositiveIntegerField(default=0)),
                        ('updated_count', models.PositiveIntegerField(default=0)),
                        ('failed_count', models.PositiveIntegerField(default=0)),
                        ('problem_count', models.PositiveIntegerField(default=0)),
                        ('problems', models.JSONField(blank=True, default=list)),
                        ('created', models.DateTimeField(auto_now_add=True)),
                        ('started', models.DateTimeField(blank=True, null=True)),
                        ('finished', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'chargers_importjob',
                        'ordering': ['-created'],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
