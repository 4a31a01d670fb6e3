-- AlterTable
ALTER TABLE "documents" ADD COLUMN     "chunks_version" TEXT;
