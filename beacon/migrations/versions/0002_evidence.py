"""evidence: bundles, blocks, receipts, transparency log

Revision ID: 0002_evidence
Revises: 0001_initial
Create Date: 2026-11-28 19:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002_evidence'
down_revision = '0001_initial'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table('bundles',
    sa.Column('cid', sa.String(length=64), nullable=False),
    sa.Column('cid_v1', sa.String(length=128), nullable=False),
    sa.Column('job_id', sa.String(length=256), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pin_state', sa.String(length=16), nullable=False),
    sa.Column('pin_attempts', sa.Integer(), nullable=False),
    sa.Column('pin_next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pin_error', sa.Text(), nullable=True),
    sa.Column('pinned_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("pin_state IN ('pending', 'pinned', 'mismatch')", name='ck_bundles_pin_state'),
    sa.PrimaryKeyConstraint('cid')
    )
    with op.batch_alter_table('bundles', schema=None) as batch_op:
        batch_op.create_index('ix_bundles_job_id', ['job_id'], unique=False)
        batch_op.create_index('ix_bundles_pin_due', ['pin_state', 'pin_next_attempt_at'], unique=False)

    op.create_table('blocks',
    sa.Column('cid', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('cid')
    )

    op.create_table('receipts',
    sa.Column('execution_id', BIG_ID, nullable=False),
    sa.Column('job_id', sa.String(length=256), nullable=False),
    sa.Column('bundle_cid', sa.String(length=64), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['execution_id'], ['executions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('execution_id')
    )
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.create_index('ix_receipts_job_id', ['job_id'], unique=False)

    op.create_table('transparency_entries',
    sa.Column('leaf_index', BIG_ID, autoincrement=False, nullable=False),
    sa.Column('job_id', sa.String(length=256), nullable=False),
    sa.Column('bundle_cid', sa.String(length=64), nullable=False),
    sa.Column('entry', sa.Text(), nullable=False),
    sa.Column('leaf_hash', sa.LargeBinary(), nullable=False),
    sa.Column('tree_head', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('leaf_index')
    )
    with op.batch_alter_table('transparency_entries', schema=None) as batch_op:
        batch_op.create_index('ix_transparency_entries_job_id', ['job_id'], unique=False)

    op.create_table('transparency_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('frontier', JSON, nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name='ck_transparency_head_single'),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('transparency_head')
    with op.batch_alter_table('transparency_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_transparency_entries_job_id')

    op.drop_table('transparency_entries')
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.drop_index('ix_receipts_job_id')

    op.drop_table('receipts')
    op.drop_table('blocks')
    with op.batch_alter_table('bundles', schema=None) as batch_op:
        batch_op.drop_index('ix_bundles_pin_due')
        batch_op.drop_index('ix_bundles_job_id')

    op.drop_table('bundles')
