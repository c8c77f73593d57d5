from django.urls import path

from scenarios import views

app_name = "scenarios"

urlpatterns = [
    path("", views.run_list, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
]
