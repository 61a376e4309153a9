"""events: every state change of a job, written with the change; jobs.event_seq numbers them per job

Revision ID: 0007_events
Revises: 0006_tokens
Create Date: 2026-11-30 11:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007_events'
down_revision = '0006_tokens'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_seq', sa.Integer(), nullable=False, server_default='0'))
    op.create_table(
        'events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('job_id', sa.String(length=256), sa.ForeignKey('jobs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=48), nullable=False),
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
        sa.UniqueConstraint('job_id', 'seq', name='uq_events_job_seq'),
    )
    op.create_index('ix_events_time', 'events', ['time'])


def downgrade() -> None:
    op.drop_index('ix_events_time', table_name='events')
    op.drop_table('events')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('event_seq')
