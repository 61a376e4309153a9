"""resilience: provider retries counted apart from claims; worker heartbeats

``executions.provider_retries`` counts the claims that ended with a transient provider failure
recorded (the unit went back to ``pending`` for another call), so ``attempts - provider_retries``
is the number of claims that ended without any outcome (a crashed or killed worker): only those
lead to ``poison`` (MAX_UNIT_ATTEMPTS); provider calls are bounded by MAX_PROVIDER_CALLS.

``worker_heartbeats`` holds each worker's last heartbeat and the units whose messages it holds,
and ``executions.claimed_by`` the worker of a unit's claim, so the sweeper re-dispatches the
units of a worker that died at once, and only those.

Revision ID: 0004_resilience
Revises: 0003_submissions
Create Date: 2026-12-01 10:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')

revision = '0004_resilience'
# On the resilience branch the previous revision is 0002_evidence; when merged after
# 0003_submissions, this becomes '0003_submissions'.
down_revision = '0003_submissions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_retries', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=255), nullable=True))
    op.create_table('worker_heartbeats',
    sa.Column('worker', sa.String(length=255), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('units', JSON, nullable=False),
    sa.PrimaryKeyConstraint('worker')
    )


def downgrade() -> None:
    op.drop_table('worker_heartbeats')
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('provider_retries')
