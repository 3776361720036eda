"""promotions, coupon campaigns, user coupons, order discounts

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupon_campaigns",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("claimed", sa.BigInteger(), nullable=False),
        sa.Column("per_user_limit", sa.Integer(), nullable=False),
        sa.Column("claim_starts_ms", sa.BigInteger(), nullable=False),
        sa.Column("claim_ends_ms", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("valid_from_ms", sa.BigInteger(), nullable=True),
        sa.Column("valid_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("valid_days", sa.Integer(), nullable=True),
        sa.Column(
            "code",
            sa.String(length=64).with_variant(
                mysql.VARCHAR(collation="utf8mb4_bin", length=64), "mysql"
            ),
            nullable=True,
        ),
        sa.Column("stacks", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("with_promotions", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("flash_ok", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_campaigns")),
        sa.UniqueConstraint("code", name=op.f("uq_coupon_campaigns_code")),
    )
    with op.batch_alter_table("coupon_campaigns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_coupon_campaigns_active_claim_ends", ["active", "claim_ends_ms"], unique=False
        )

    op.create_table(
        "promotions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("starts_ms", sa.BigInteger(), nullable=False),
        sa.Column("ends_ms", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("flash_ok", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
    )
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.create_index("ix_promotions_active_ends", ["active", "ends_ms"], unique=False)

    op.create_table(
        "user_coupons",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "claim_key",
            sa.String(length=128).with_variant(
                mysql.VARCHAR(collation="utf8mb4_bin", length=128), "mysql"
            ),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("valid_from_ms", sa.BigInteger(), nullable=False),
        sa.Column("valid_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["coupon_campaigns.id"],
            name=op.f("fk_user_coupons_campaign_id_coupon_campaigns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_coupons")),
        sa.UniqueConstraint("campaign_id", "user_id", "claim_key", name="uq_user_coupons_claim"),
    )
    with op.batch_alter_table("user_coupons", schema=None) as batch_op:
        batch_op.create_index(
            "ix_user_coupons_campaign_state", ["campaign_id", "state"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_user_coupons_order_id"), ["order_id"], unique=False)
        batch_op.create_index("ix_user_coupons_user_state", ["user_id", "state"], unique=False)

    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("discount_cents", sa.BigInteger(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("discount_cents", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("discount_cents")

    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.drop_column("discount_cents")

    with op.batch_alter_table("user_coupons", schema=None) as batch_op:
        batch_op.drop_index("ix_user_coupons_user_state")
        batch_op.drop_index(batch_op.f("ix_user_coupons_order_id"))
        batch_op.drop_index("ix_user_coupons_campaign_state")

    op.drop_table("user_coupons")
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.drop_index("ix_promotions_active_ends")

    op.drop_table("promotions")
    with op.batch_alter_table("coupon_campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_campaigns_active_claim_ends")

    op.drop_table("coupon_campaigns")
