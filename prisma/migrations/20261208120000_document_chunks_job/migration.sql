-- AlterTable
ALTER TABLE "documents" ADD COLUMN     "chunks_job_id" TEXT;
