from django.urls import path

from fleet_io import views

app_name = "imports"

urlpatterns = [
    path("jobs/<int:pk>/", views.job_detail, name="job"),
    path("jobs/<int:pk>/status/", views.job_status, name="job_status"),
    path("jobs/<int:pk>/confirm/", views.job_confirm, name="job_confirm"),
    # docs/import-formats.md and the samples it links to (relative links: samples/<name>).
    path("formats/", views.import_formats, name="formats"),
    path("formats/samples/<str:name>", views.import_sample, name="sample"),
]
