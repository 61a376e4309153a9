"""submissions: the signed projection as text, the matched form, the submission identity,
the submitter's wallet, the cross-region wrapper's requested values; idempotency keys per
submitting key, matched on identity

Revision ID: 0003_submissions
Revises: 0002_evidence
Create Date: 2026-11-30 10:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003_submissions'
down_revision = '0002_evidence'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_spec', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('signature_form', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('identity', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('submitter_wallet', sa.String(length=42), nullable=True))
        batch_op.add_column(sa.Column('requested', JSON, nullable=True))
        batch_op.create_index('ix_jobs_identity', ['identity'], unique=True)
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=256), type_=sa.String(length=320),
                              existing_nullable=False)
        batch_op.alter_column('body_sha256', new_column_name='identity', existing_type=sa.String(length=64),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('identity', new_column_name='body_sha256', existing_type=sa.String(length=64),
                              existing_nullable=False)
        batch_op.alter_column('key', existing_type=sa.String(length=320), type_=sa.String(length=256),
                              existing_nullable=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_identity')
        batch_op.drop_column('requested')
        batch_op.drop_column('submitter_wallet')
        batch_op.drop_column('identity')
        batch_op.drop_column('signature_form')
        batch_op.drop_column('signed_spec')
