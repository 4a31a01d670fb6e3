-- CreateTable
CREATE TABLE "erased_sources" (
    "id" UUID NOT NULL,
    "user_id" UUID NOT NULL,
    "source" TEXT NOT NULL,
    "erased_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "erased_sources_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "erased_sources_user_id_source_idx" ON "erased_sources"("user_id", "source");

-- CreateIndex
CREATE INDEX "erased_sources_erased_at_idx" ON "erased_sources"("erased_at");

-- AddForeignKey
ALTER TABLE "erased_sources" ADD CONSTRAINT "erased_sources_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;

