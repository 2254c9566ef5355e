"""Every model, imported so that ``Base.metadata`` knows every table (Alembic reads it)."""
from app.campaigns.models import Campaign, CampaignJob, WebhookSettings
from app.db import Base
from app.ingest.models import FintechTransaction, IngestedFile, IngestRowError
from app.quota.models import UsageDaily, UsageMonthly
from app.reconcile.models import Reconciliation, ReconciliationRun
from app.scheduling.models import Job
from app.scheduling.periodic import PeriodicRun
from app.tenancy.models import RevokedToken, Tenant, User

__all__ = ["Base", "Campaign", "CampaignJob", "FintechTransaction", "IngestedFile", "IngestRowError", "Job", "PeriodicRun", "Reconciliation", "ReconciliationRun", "RevokedToken", "Tenant", "UsageDaily", "UsageMonthly", "User", "WebhookSettings"]
