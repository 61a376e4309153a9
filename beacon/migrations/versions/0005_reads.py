"""reads: job generations (manual retries), per-answer bias scores, the hybrid router's
region flag and receipt per execution, each unit's earlier attempts, bundle succession

Revision ID: 0005_reads
Revises: 0004_resilience
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005_reads'
# Written on a branch without 0004_resilience; at merge this becomes '0004_resilience'.
down_revision = '0004_resilience'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('history', JSON, nullable=True))
        batch_op.add_column(sa.Column('bias_score', JSON, nullable=True))
        batch_op.add_column(sa.Column('region_flag', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('provider_receipt', JSON, nullable=True))
    with op.batch_alter_table('bundles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('supersedes', sa.String(length=64), nullable=True))
    with op.batch_alter_table('transparency_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))


def downgrade() -> None:
    with op.batch_alter_table('transparency_entries', schema=None) as batch_op:
        batch_op.drop_column('generation')
    with op.batch_alter_table('bundles', schema=None) as batch_op:
        batch_op.drop_column('supersedes')
        batch_op.drop_column('generation')
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.drop_column('provider_receipt')
        batch_op.drop_column('region_flag')
        batch_op.drop_column('bias_score')
        batch_op.drop_column('history')
        batch_op.drop_column('generation')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('generation')
