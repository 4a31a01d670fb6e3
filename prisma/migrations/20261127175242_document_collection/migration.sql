-- AlterTable
ALTER TABLE "documents" ADD COLUMN     "collection" TEXT;
