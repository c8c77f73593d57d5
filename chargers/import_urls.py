from django.urls import path

from chargers import import_views

app_name = "chargers_import"

urlpatterns = [
    path("jobs/<int:pk>/", import_views.job_detail, name="job"),
    path("jobs/<int:pk>/status/", import_views.job_status, name="job_status"),
    path("jobs/<int:pk>/confirm/", import_views.job_confirm, name="job_confirm"),
]
